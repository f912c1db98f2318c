"""The `grid` command: one module per command group, all registered by `grid_cli.commands.app`."""
