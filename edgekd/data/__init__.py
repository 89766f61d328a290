"""Datasets as plain numpy arrays (no torch import): built-in Fashion-MNIST, image folders, `.npz`.

Images are uint8 N x C x H x W; models take float32 in [0, 1] and normalise inside themselves, so the
exported graph, the device runner and the trainer all feed the same thing.
"""

from edgekd.data.datasets import Dataset, Split, to_float
from edgekd.data.load import evaluation_split, load_data

__all__ = ["Dataset", "Split", "evaluation_split", "load_data", "to_float"]
