"""`python -m pneumocam ...` runs the command line (so `torchrun -m pneumocam` works too)."""

from pneumocam.cli import main

main()
