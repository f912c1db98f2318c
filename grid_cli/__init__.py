"""Grid's Python client and `grid` command: sign in to a domain, share data, review requests.

The SDK lives in `grid_cli.client`, whose public names (its `__all__`) are the package's own,
so `import grid_cli as grid` gives `grid.login`, `grid.connect`, `grid.TrainingPlan`, ...
"""

from grid_cli import client
from grid_cli.client import *  # noqa: F403 - the SDK's names, listed once in its __all__

__all__ = client.__all__
