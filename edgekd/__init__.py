"""edgekd: distil a compact student that meets a latency budget on a named edge target.

Importing edgekd is cheap: torch, onnxruntime, openvino and tensorrt are imported only where used.
"""

__version__ = "0.1.0"
