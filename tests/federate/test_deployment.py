"""The same ServerApp and ClientApp on a real Flower deployment: a SuperLink and two SuperNodes started
here as local processes on free ports, `flwr run` on the app `edgekd federate --flower-app` writes, one
round (one client sampled) on 200 samples, then every process group torn down. About 45 s on two cores
(80 s when other jobs crowd them): each process, and the `flwr-clientapp` each message starts, imports
torch and edgekd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.models import load_checkpoint

pytest.importorskip("flwr", reason="Flower is not installed: pip install -e '.[federated]'")

BIN = Path(sys.executable).parent
EXECUTABLES = ("flwr", "flower-superlink", "flower-supernode", "flower-superexec", "flwr-clientapp", "flwr-serverapp")
MISSING = [name for name in EXECUTABLES if not (BIN / name).is_file()]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"Flower's executables are not beside python: {MISSING}")

START_S = 60.0  # a process that imports torch on two busy cores listens within seconds; this is the ceiling
RUN_S = 240  # `flwr run`: one round, 30-70 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Whether `proc` listens on `port`: False as soon as it exits (say, another process took the port)."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(0.5)  # had another process the port, `proc` has failed to bind it by now
                return proc.poll() is None
        time.sleep(0.25)
    return False


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group (the SuperNodes' ClientApp processes and the SuperLink's SuperExec
    are in their parent's group), then SIGKILL to any still there after 10 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:  # children that outlived their parent
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A SuperLink and two SuperNodes (partitions 0 and 1 of 2); yields the SuperLink port and the env."""
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "flwr-home"))
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # they start flower-superexec and flwr-clientapp by name
    procs: list[subprocess.Popen[bytes]] = []

    def launch(name: str, command: Callable[[int], list[str]]) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = tmp_path / f"{name}-{port}.log"
        with log.open("wb") as sink:  # the child writes to its own copy of the descriptor
            proc = subprocess.Popen(
                [str(BIN / command(port)[0]), *command(port)[1:]],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
                start_new_session=True,
            )
        procs.append(proc)
        return proc, port

    def started(name: str, command: Callable[[int], list[str]], first: tuple[subprocess.Popen[bytes], int]) -> int:
        """The port `first` listens on; else (another process took the port first) a relaunch's, twice at most."""
        proc, port = first
        for _ in range(3):
            if listening(port, proc):
                return port
            stop([proc])
            proc, port = launch(name, command)
        logs = "\n".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob(f"{name}-*.log")))
        raise AssertionError(f"{name} did not start:\n{logs}")

    def superlink(port: int) -> list[str]:
        return ["flower-superlink", "--insecure", "--port", str(port), "--disable-runtime-dependency-installation"]

    def supernode(k: int) -> Callable[[int], list[str]]:
        return lambda port: [
            "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port", str(port),
            "--node-config", f"partition-id={k} num-partitions=2",
        ]  # fmt: skip

    try:
        link = started("superlink", superlink, launch("superlink", superlink))
        nodes = {k: launch(f"node{k}", supernode(k)) for k in range(2)}  # both start at once
        for k, first in nodes.items():
            started(f"node{k}", supernode(k), first)
        yield link, env
    finally:
        stop(procs)


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
    # both SuperNodes answer the server's query (their partitions), one is sampled to train: each message
    # starts a `flwr-clientapp` process, the most of this test's time
    args = ["--clients", "2", "--sample", "1", "--rounds", "1", "--alpha", "0.5", "--arch", "cnn-xs", "--limit", "200"]
    result = CliRunner().invoke(cli, ["federate", *args, "--data", fmnist, "--out", str(out), "--flower-app", str(app)])
    assert result.exit_code == 0, result.output
    try:
        run = subprocess.run(
            [str(BIN / "flwr"), "run", str(app), "local", "--stream"],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_S,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as err:
        logs = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("*.log")))
        raise AssertionError(f"`flwr run` did not finish within {RUN_S} s\n{logs}") from err
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = load_checkpoint(out / "model.pt")
    assert payload["meta"]["kind"] == "federated" and payload["meta"]["round"] == 1
