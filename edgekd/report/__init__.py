"""Rendering only: numbers arrive as floats and are formatted here, and nowhere else."""

from edgekd.report.summary import write_demo_summary, write_reports

__all__ = ["write_demo_summary", "write_reports"]
