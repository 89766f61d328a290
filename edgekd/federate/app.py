"""The apps a real Flower deployment runs: `flwr run DIR` on a Flower App folder written by
`write_flower_app` (its pyproject names `server_app` and `client_app` below), against a SuperLink with
one SuperNode per client. The federation's options are the app's run config; the clients read theirs
from the messages, so a SuperNode needs only its `partition-id` and `num-partitions`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Context, UserConfig
from flwr.serverapp import Grid, ServerApp

from edgekd.federate.client import client_app
from edgekd.federate.config import FederationConfig
from edgekd.federate.server import serve

__all__ = ["client_app", "config_from_run", "run_config", "server_app", "write_flower_app"]

server_app = ServerApp()


def run_config(cfg: FederationConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    """`cfg` as Flower run-config keys (dashes; `limit` 0 = none)."""
    fields = {k.replace("_", "-"): v for k, v in cfg.model_dump(mode="json").items()}
    fields["limit"] = cfg.limit or 0
    return {**fields, "out": str(Path(out).resolve()), "resume": resume}


def config_from_run(config: UserConfig) -> tuple[FederationConfig, Path, bool]:
    fields: dict[str, Any] = {k.replace("-", "_"): v for k, v in config.items() if k not in ("out", "resume")}
    fields["limit"] = fields.get("limit") or None
    return FederationConfig.model_validate(fields).check(), Path(str(config["out"])), bool(config["resume"])


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, out, resume = config_from_run(context.run_config)
    serve(grid, cfg, out, resume)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def write_flower_app(folder: Path, cfg: FederationConfig, out: Path, resume: bool = False) -> Path:
    """A Flower App folder for `flwr run FOLDER`: the components above and `cfg` as its run config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        'name = "edgekd-federation"',
        'version = "1.0.0"',
        'dependencies = ["edgekd", "flwr[simulation]>=1.42"]',
        "",
        "[tool.hatch.build.targets.wheel]",
        'packages = ["."]',
        "",
        "[tool.flwr.app]",
        'publisher = "edgekd"',
        "",
        "[tool.flwr.app.components]",
        'serverapp = "edgekd.federate.app:server_app"',
        'clientapp = "edgekd.federate.app:client_app"',
        "",
        "[tool.flwr.app.config]",
        *(f"{key} = {_toml(value)}" for key, value in run_config(cfg, out, resume).items()),
    ]
    path = folder / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
