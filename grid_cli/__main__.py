"""`python -m grid_cli` runs the `grid` command."""

from grid_cli.cli import main

main()
