"""SECURITY.md's promises, checked: no pickle, weights-only checkpoints, telemetry off."""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner

from edgekd.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in ("edgekd", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def _calls(name: str) -> Iterator[tuple[Path, ast.Call]]:
    """Calls of `<anything>.load` whose receiver is `name` (torch.load, np.load, numpy.load)."""
    for path, tree in _sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in name.split("|")
            ):
                yield path, node


def _keyword(call: ast.Call, key: str) -> object:
    for kw in call.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "absent"


def test_no_pickle_import() -> None:
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] in ("pickle", "cPickle", "dill")]
    assert not found


def test_torch_load_is_weights_only() -> None:
    calls = list(_calls("torch"))
    assert calls  # the check looks at real code
    assert [f"{p}:{c.lineno}" for p, c in calls if _keyword(c, "weights_only") is not True] == []


def test_np_load_refuses_pickles() -> None:
    calls = list(_calls("np|numpy"))
    assert calls
    assert [f"{p}:{c.lineno}" for p, c in calls if _keyword(c, "allow_pickle") is not False] == []


class _Payload:
    """A pickle that, when loaded by an unsafe loader, creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "edgekd-checkpoint-1", "arch": _Payload(marker)}))
    for args in (
        ["export", str(evil), "--target", "cpu-ort-fp32", "--out", str(tmp_path / "out")],
        ["distill", "--teacher", str(evil), "--student", "cnn-xs", "--out", str(tmp_path / "s.pt")],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "not a readable edgekd checkpoint" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_openvino_telemetry_is_off() -> None:
    code = (
        "import importlib.util, sys\n"
        "from edgekd.runtimes._openvino_import import import_openvino\n"
        "import_openvino()\n"
        "try:\n"
        "    import openvino_telemetry\n"
        "    print('importable')\n"
        "except ImportError:\n"
        "    print('off')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "off"
