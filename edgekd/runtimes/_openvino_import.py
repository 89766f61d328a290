"""Import openvino with its telemetry off: shared by the adapter (`openvino`) and NNCF quantization
(`_ov_quant`), which import this module, never each other."""

from __future__ import annotations

import sys
from types import ModuleType


def import_openvino() -> ModuleType:
    """Import openvino with its telemetry off.

    `import openvino` imports `openvino.tools.ovc`, which sends an "import" event to Google Analytics
    and writes a client id and a usage counter under ~/intel; `convert_model` sends more events. It
    does so by default: with no consent file (~/intel/openvino_telemetry) consent counts as given.
    The documented opt-out, `opt_in_out --opt_out`, rewrites that file for the whole user account and
    itself sends a "declined" event; setting CI=true also works but leaks to child processes and
    changes other tools. OpenVINO and NNCF both fall back to a no-op stub when `openvino_telemetry`
    cannot be imported, so we make it unimportable in this process: no network, no file, nothing
    outside this process changes.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino as ov

    _silence_loaded_telemetry()
    result: ModuleType = ov
    return result


def _silence_loaded_telemetry() -> None:
    """When the host process imported openvino before us, point ovc's telemetry at its own stub."""
    real = sys.modules.get("openvino_telemetry")
    if real is None:
        return
    from openvino.tools.ovc import telemetry_stub

    for name, module in list(sys.modules.items()):
        if name.startswith("openvino.tools.ovc") and getattr(module, "tm", None) is real:
            module.tm = telemetry_stub  # type: ignore[attr-defined]
