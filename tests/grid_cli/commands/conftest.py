"""Fixtures the command tests share with the network's and the registry's tests.

They are defined once, beside the tests they were written for; importing them here makes them
reachable from every command test (pytest finds fixtures in a conftest's namespace).
"""

from tests.grid_cli.commands.test_network import run, twin_network  # noqa: F401  (fixtures)
from tests.network.conftest import (  # noqa: F401  (fixtures)
    live_member,
    live_network,
    make_signer,
    network,
    network_app,
    network_config,
    network_database_url,
    network_sqlite_template,
    operator,
)
from tests.registry.conftest import new_client  # noqa: F401  (fixture)
from tests.registry.test_verify import finished_job  # noqa: F401  (fixture)
