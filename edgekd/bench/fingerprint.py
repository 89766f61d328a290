"""What a measurement was taken on: every latency carries this, so numbers from two machines never mix."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

_CPUINFO = Path("/proc/cpuinfo")
# x86 says "model name"; ARM kernels say "Model" or "Hardware" (or only "CPU part" numbers).
_CPUINFO_KEYS = ("model name", "Model", "Hardware", "cpu model", "Processor")


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else the best platform string there is."""
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    found = _first_value(text, _CPUINFO_KEYS)
    return found or platform.processor() or platform.machine() or "unknown"


def _first_value(cpuinfo: str, keys: tuple[str, ...]) -> str | None:
    """The value of the first of `keys` (in priority order) that /proc/cpuinfo holds."""
    values: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in keys and value.strip():
            values.setdefault(key.strip(), " ".join(value.split()))
    return next((values[k] for k in keys if k in values), None)


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fingerprint(
    runtime: str, runtime_version: str, precision: str, threads: int, batch: int, device: str
) -> dict[str, Any]:
    """The device and settings one measurement was taken with."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "cores_usable": usable_cores(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtime": runtime,
        "runtime_version": runtime_version,
        "precision": precision,
        "threads": threads,
        "batch": batch,
        "device": device,
    }
