"""`python -m pneumocam.cli ...` runs the command line."""

from pneumocam.cli.app import main

main()
