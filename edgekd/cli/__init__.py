"""The edgekd command line: each command parses, builds a config, makes one call into a stage and prints.

Exit status: 0 on success, 2 on bad input (one line naming the problem and the fix), 1 on a failure
inside edgekd. The group and the shared options are in `_app`; importing the command modules registers
their commands on it.
"""

from __future__ import annotations

from edgekd.cli import build, federate, pipeline, profile, train
from edgekd.cli._app import cli

__all__ = ["build", "cli", "federate", "main", "pipeline", "profile", "train"]


def main() -> None:
    cli(prog_name="edgekd")
