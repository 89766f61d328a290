"""Benchmark scripts of edgekd itself (not of artifacts): each is `python -m edgekd.bench.suites.NAME`."""
