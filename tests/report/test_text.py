"""How reports write numbers."""

from __future__ import annotations

from edgekd.report.text import fmt_ms, fmt_pct


def test_milliseconds_keep_small_differences_visible() -> None:
    assert fmt_ms(0.0719) == "0.072"
    assert fmt_ms(1.23456) == "1.235"
    assert fmt_ms(0.00021) == "0.00021"  # a budget missed by 0.2 microseconds is not "0.000"
    assert fmt_ms(-0.0049) == "-0.0049"
    assert fmt_ms(0.0) == "0.000"
    assert fmt_ms(None) == "-"


def test_percentages() -> None:
    assert fmt_pct(0.85236) == "85.24%"
    assert fmt_pct(None) == "-"
