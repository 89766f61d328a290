"""`edgekd federate` on Flower's simulation engine: a short run through the CLI whose model is an
ordinary edgekd checkpoint (export, bench, select --teacher and report take it), resume after an
interruption to the same result, and bad input as one line with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.cli import cli

pytest.importorskip("flwr", reason="Flower is not installed: pip install -e '.[federated]'")

from edgekd.federate import server  # noqa: E402
from edgekd.federate.config import FederationConfig  # noqa: E402
from edgekd.federate.run import federate  # noqa: E402
from edgekd.models import load_checkpoint  # noqa: E402

SHORT_ROUND = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
SHORT_RULE = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)
SMALL = ["--clients", "4", "--sample", "2", "--alpha", "0.5", "--arch", "cnn-xs", "--batch-size", "64"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def small(fmnist: str, rounds: int) -> FederationConfig:
    return FederationConfig(
        strategy="fedgen", data=fmnist, arch="cnn-xs", clients=4, sample=2, rounds=rounds, alpha=0.5, batch_size=64
    )


def after_round_one(out: Path) -> Path:
    """Where the fixture keeps a copy of its folder as round 1 left it: what an interruption then leaves."""
    return out.with_name(f"{out.name}-after-round-1")


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("fed")
    real = server.checkpoint

    def keep_round_one(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        if not after_round_one(out).exists():  # the first call is round 1's, files complete (written atomically)
            shutil.copytree(out, after_round_one(out))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server, "checkpoint", keep_round_one)
        code, output = run("federate", "--strategy", "fedgen", "--rounds", "2", *SMALL, "--data", str(fmnist_npz),
                           "--out", str(out), "--json")  # fmt: skip
    assert code == 0, output
    return out, json.JSONDecoder().raw_decode(output[output.index("{") :])[0]  # Ray may log after it


def test_federate_writes_an_edgekd_checkpoint_every_round(federated: tuple[Path, dict[str, object]]) -> None:
    out, result = federated
    history = result["history"]
    assert isinstance(history, list) and [row["round"] for row in history] == [1, 2]
    assert all(0.0 <= row["test_acc"] <= 1.0 and row["bytes_up"] > 0 for row in history)
    assert history[1]["bytes_down"] > history[0]["bytes_down"]  # from round 2 the generator travels too
    payload = load_checkpoint(out / "model.pt")
    assert payload["meta"]["kind"] == "federated" and payload["meta"]["round"] == 2
    assert (out / "federated.md").is_file() and (out / "federated.svg").read_text().startswith("<svg")


def test_the_federated_model_is_an_ordinary_checkpoint(
    federated: tuple[Path, dict[str, object]], fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export, bench (with accuracy) and select --teacher take model.pt; report takes the folder."""
    from edgekd.select import latency, pipeline

    out, _ = federated
    build = tmp_path / "build"
    code, output = run("export", str(out / "model.pt"), "--target", "cpu-ort-fp32", "--out", str(build))
    assert code == 0, output
    assert (build / "model.onnx").is_file()
    code, output = run("bench", str(build), "--data", fmnist, "--quick", "--json")
    assert code == 0, output
    assert 0.0 <= json.loads(output)["accuracy"] <= 1.0
    for module in (latency, pipeline):  # few timing rounds: the test is about the checkpoint, not the latency
        monkeypatch.setattr(module, "DEFAULT_RULE", SHORT_RULE)
        monkeypatch.setattr(module, "ROUND_TIMING", SHORT_ROUND)
    space = tmp_path / "one.yaml"
    space.write_text("family: cnn\nwidth: [2]\ndepth: [1]\n")
    selected = CliRunner().invoke(cli, ["select", "--teacher", str(out / "model.pt"), "--space", str(space),
                                        "--target", "cpu-ort-fp32", "--budget-ms", "1000", "--data", fmnist,
                                        "--epochs", "1", "--limit", "400", "--out", str(tmp_path / "select"),
                                        "--json"])  # fmt: skip
    assert selected.exit_code == 0, selected.output
    assert json.loads(selected.stdout)["met_budget"]
    code, output = run("report", str(out))
    assert code == 0, output
    page = (out / "report.html").read_text()
    assert "Test accuracy per round" in page and "<svg" in page and "fedgen" in page
    rounds = json.loads((out / "report.json").read_text())["federations"]["fedgen"]
    assert [row["round"] for row in rounds] == [1, 2]


def test_resume_after_an_interruption_gives_the_same_model(
    federated: tuple[Path, dict[str, object]], fmnist: str, tmp_path: Path
) -> None:
    """The fixture's folder as round 1 left it (what a federation stopped after round 1 leaves: each round's
    files are written atomically) resumes to the uninterrupted run's model and history, bit for bit."""
    reference, _ = federated
    shutil.copytree(after_round_one(reference), tmp_path, dirs_exist_ok=True)
    assert load_checkpoint(tmp_path / "model.pt")["meta"]["round"] == 1
    result = federate(small(fmnist, 2), tmp_path, resume=True)
    assert result.rounds == 2
    resumed, uninterrupted = load_checkpoint(tmp_path / "model.pt"), load_checkpoint(reference / "model.pt")
    assert resumed["meta"]["history"] == uninterrupted["meta"]["history"]
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--clients", "4", "--sample", "5"], "--sample 5 is more than --clients 4"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--clients", "200", "--sample", "2", "--alpha", "0.1"], "without data"),
    ],
)
def test_bad_federations_are_one_line_exit_2(args: list[str], needle: str, fmnist: str, tmp_path: Path) -> None:
    code, output = run("federate", *args, "--data", fmnist, "--out", str(tmp_path))
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert len(lines) == 1 and lines[0].startswith("edgekd: error:") and needle in lines[0], output


def test_resume_refuses_another_federations_state(federated: tuple[Path, dict[str, object]], fmnist: str) -> None:
    out, _ = federated
    code, output = run("federate", "--rounds", "3", *SMALL[:-2], "--batch-size", "32", "--data", fmnist,
                       "--out", str(out), "--resume")  # fmt: skip
    assert code == 2 and "another federation" in output, output
