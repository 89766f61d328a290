"""The kinds of failure the CLI distinguishes.

`UserError` is bad input: the CLI prints its one-line message (which names the problem and the fix)
and exits 2. Any other `EdgekdError` is a failure inside edgekd that edgekd understood (exit 1, one
line); anything else is a bug (exit 1, with a traceback when EDGEKD_DEBUG=1).
"""

from __future__ import annotations


class EdgekdError(Exception):
    """A failure edgekd can explain in one line."""


class UserError(EdgekdError):
    """Bad input from the user: a missing file, an unknown name, malformed YAML, mismatched data."""


class ParityError(UserError):
    """An exported model disagrees with the PyTorch model it came from."""


class TrainingDiverged(EdgekdError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""
