"""The same ServerApp and ClientApp on a real Flower deployment: a SuperLink and two SuperNodes started
here as local processes on free ports, `flwr run` on the app `edgekd federate --flower-app` writes, one
round, then everything torn down. Slow (each message starts a `flwr-clientapp` process): -m slow."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.models import load_checkpoint

pytest.importorskip("flwr", reason="Flower is not installed: pip install -e '.[federated]'")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A SuperLink and two SuperNodes (partitions 0 and 1 of 2); yields the SuperLink port and the env."""
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "flwr-home"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # they start flower-superexec by name
    link = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / args[0]), *args[1:]],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    try:
        superlink = start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--port",
            str(link),
            "--disable-runtime-dependency-installation",
        )
        wait_for_port(link, superlink, tmp_path / "superlink.log")
        for k in range(2):
            port = free_port()
            node = start(
                f"node{k}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port", str(port),
                "--node-config", f"partition-id={k} num-partitions=2",
            )  # fmt: skip
            wait_for_port(port, node, tmp_path / f"node{k}.log")
        yield link, env
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_federation_on_a_superlink_with_two_supernodes(
    deployment: tuple[int, dict[str, str]], fmnist: str, tmp_path: Path
) -> None:
    link, env = deployment
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    out, app = tmp_path / "fed", tmp_path / "app"
    args = ["--clients", "2", "--sample", "2", "--rounds", "1", "--alpha", "0.5", "--arch", "cnn-xs"]
    result = CliRunner().invoke(cli, ["federate", *args, "--data", fmnist, "--out", str(out), "--flower-app", str(app)])
    assert result.exit_code == 0, result.output
    flwr = str(Path(sys.executable).parent / "flwr")
    run = subprocess.run(
        [flwr, "run", str(app), "local", "--stream"], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = load_checkpoint(out / "model.pt")
    assert payload["meta"]["kind"] == "federated" and payload["meta"]["round"] == 1
