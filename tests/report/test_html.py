"""The HTML report: self-contained, plots inline, and it renders in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.report import write_reports
from edgekd.report.plots import pareto_front
from edgekd.store import STORE_NAME, Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _bench(p50: float, acc: float, runtime: str = "onnxruntime") -> dict:
    quantiles = [p50 * (0.8 + 0.004 * i) for i in range(101)]
    return {
        "batch": 1,
        "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "mean": p50, "std": 0.01},
        "latency_quantiles_ms": quantiles,
        "throughput_per_s": 1000 / p50,
        "accuracy": acc,
        "fingerprint": {"runtime": runtime, "precision": "fp32", "cpu_model": "test cpu", "cores": 2},
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    store = Store(tmp_path / STORE_NAME)
    run = store.start_run("distill", "student-cnn-xs.pt", {})
    for epoch, acc in enumerate([0.80, 0.84, 0.86], 1):
        store.log_metric(run, "val_acc", acc, epoch)
    store.log_metric(run, "test_acc", 0.855, 3)
    for name, p50, acc in [("small", 0.05, 0.84), ("large", 0.30, 0.90), ("worse", 0.40, 0.83)]:
        store.log_artifact(
            tmp_path / name / "model.ort.onnx",
            {
                "runtime": "onnxruntime",
                "precision": "fp32",
                "target": "cpu-ort-fp32",
                "accuracy": {"torch": acc, "onnx": acc, "artifact": acc},
                "parity": {"max_abs_diff": 1e-6, "top1_agreement": 1.0},
            },
        )
        store.log_benchmark(str(tmp_path / name / "model.ort.onnx"), _bench(p50, acc))
    return tmp_path


def test_pareto_front() -> None:
    assert pareto_front([(0.05, 0.84), (0.30, 0.90), (0.40, 0.83), (0.05, 0.80)]) == [0, 1]


def test_reports_are_written(run_dir: Path) -> None:
    paths = write_reports(run_dir, ["html", "md", "json"])
    assert [p.name for p in paths] == ["report.json", "report.html", "report.md"]
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") == 4  # Pareto, latency CDFs, export chain, training curves
    for external in ('src="http', 'href="http', "<link", "<script", "url(http"):  # nothing fetched from elsewhere
        assert external not in html
    assert '<tr class="front"><td>small</td>' in html and '<tr class="front"><td>large</td>' in html
    assert "<td>worse</td>" in html
    assert "| small/model.ort.onnx | onnxruntime | fp32 | 1 | 0.050 |" in (run_dir / "report.md").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium absent: apt-get install -y chromium")
def test_html_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    write_reports(run_dir, ["html"])
    page = (run_dir / "report.html").as_uri()
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Accuracy against latency" in dom.stdout and dom.stdout.count("<svg") == 4
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1000,2400", page],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000  # a blank page compresses to a few KB


def test_shift_along_the_chain_shows_when_an_export_scored_it(run_dir: Path) -> None:
    write_reports(run_dir, ["html"])
    assert "Under domain shift" not in (run_dir / "report.html").read_text()
    store = Store(run_dir / STORE_NAME)
    chain = {"torch": 0.7, "onnx": 0.7, "artifact": 0.61}
    store.log_artifact(
        run_dir / "int8" / "model.ort.onnx",
        {
            "runtime": "onnxruntime",
            "precision": "int8",
            "target": "cpu-ort-int8",
            "accuracy": {"torch": 0.84, "onnx": 0.84, "artifact": 0.83},
            "parity": {"max_abs_diff": 1e-2, "top1_agreement": 0.99},
            "shift": {"blur-3": chain},
        },
    )
    write_reports(run_dir, ["html"])
    html = (run_dir / "report.html").read_text()
    assert "Under domain shift" in html and "<td>blur-3</td>" in html and "61.00%" in html
