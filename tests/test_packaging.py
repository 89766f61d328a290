"""An installed wheel (not only a source checkout) carries the target profiles, the calibration recipes,
the device runner and its timing protocol, and nothing of the experiments: a user who pip-installs
edgekd can export for `cpu-ort-fp32` and package a bundle."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_targets_calibration_and_the_runner(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("edgekd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"edgekd/_shipped/targets/{p.name}" for p in (ROOT / "targets").glob("*.yaml")}
    shipped |= {f"edgekd/_shipped/calibration/{p.name}" for p in (ROOT / "calibration").glob("*.yaml")}
    assert shipped | {"edgekd/_shipped/edgekd_runner.py", "edgekd/bench/protocol.py"} <= names
    # the product alone: no experiment, no result record, no checkpoint
    assert not [n for n in names if n.startswith("benchmarks/") or "/suites/" in n or "/results/" in n]
    assert not [n for n in names if n.endswith((".pt", ".pth", ".ckpt", ".onnx"))]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    elsewhere = tmp_path / "elsewhere"  # no targets/ in the working directory
    elsewhere.mkdir()
    runner = ROOT / "scripts" / "edgekd_runner.py"
    probe = (
        "import edgekd, edgekd.bundle as b, edgekd.config as c, edgekd.data.calibration as cal;"
        f"assert edgekd.__file__.startswith({str(site)!r}), edgekd.__file__;"
        "print(c.load_target('jetson-orin-trt-int8').name, cal.load_recipe('fashion-mnist').samples,"
        f" b.RUNNER_SOURCE.read_bytes() == open({str(runner)!r}, 'rb').read(),"
        " b.load_runner().protocol.__file__.startswith(" + repr(str(site)) + "))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["jetson-orin-trt-int8", "512", "True", "True"]
