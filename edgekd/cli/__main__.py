"""`python -m edgekd.cli` (what torchrun starts): the same command line as `edgekd`."""

from edgekd.cli import main

main()
