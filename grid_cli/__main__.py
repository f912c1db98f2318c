"""`python -m grid_cli` runs the `grid` command."""

from grid_cli.commands.app import main

main()
