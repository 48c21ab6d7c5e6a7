"""`python -m pneumocam.cli ...` runs the command line."""

from pneumocam.cli.entry import main

main()
