"""`grid chain start`: a local Ethereum chain for development, with the registry deployed."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from grid_cli.commands.onchain import registry_errors
from grid_cli.commands.options import json_option
from grid_cli.commands.output import print_json

NODE_FILES = ("domain.db", "network.db", "eth_key", "node_identity.json")


def _fund_targets(fund: tuple[str, ...], nodes_dir: Path, chain_dir: Path) -> list[tuple[str, str]]:
    """(address, where it came from) for every --fund value, or every node under nodes_dir."""
    from eth_utils import is_address, to_checksum_address

    from registry.keys import load_or_create_account

    if fund:
        values = list(fund)
    elif nodes_dir.is_dir():
        values = [
            str(path)
            for path in sorted(nodes_dir.iterdir())
            if path.is_dir()
            and path.resolve() != chain_dir.resolve()
            and any((path / name).exists() for name in NODE_FILES)
        ]
    else:
        values = []
    targets: list[tuple[str, str]] = []
    for value in values:
        if is_address(value):
            targets.append((to_checksum_address(value), "address"))
        else:
            account = load_or_create_account(Path(value), env=False)
            targets.append((str(account.address), value))
    return targets


@click.group()
def chain() -> None:
    """A local Ethereum chain for development (anvil, with the registry deployed)."""


@chain.command("start")
@click.option("--port", default=8545, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    default=".grid/chain",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where chain.json (RPC URL, registry address) and anvil's log are written.",
)
@click.option(
    "--fund",
    multiple=True,
    help="A node data dir (its key is made if missing) or an address to give ether to; "
    "repeat for several. Default: every node data dir under --nodes-dir.",
)
@click.option(
    "--nodes-dir",
    default=".grid",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where local nodes keep their data dirs.",
)
@click.option("--ether", default=100, show_default=True, type=click.IntRange(1, 10**9))
@json_option
def chain_start(
    port: int, data_dir: Path, fund: tuple[str, ...], nodes_dir: Path, ether: int, as_json: bool
) -> None:
    """Run anvil on 127.0.0.1, deploy the registry and fund local nodes, until Ctrl-C."""
    from registry.chain import start_local_chain, write_chain_file

    targets = _fund_targets(fund, nodes_dir, data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "anvil.log").open("ab")
    try:
        local = start_local_chain(
            port, fund_addresses=[a for a, _ in targets], ether=ether, log=log
        )
    except registry_errors() as exc:
        log.close()
        raise click.ClickException(str(exc)) from None
    write_chain_file(data_dir / "chain.json", local)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    env = local.environment()
    if as_json:
        print_json({**env, "chain_id": local.chain_id, "funded": [a for a, _ in targets]})
    else:
        click.echo(f"Local chain at {local.rpc_url} (chain id {local.chain_id})")
        click.echo(f"Registry deployed at {local.registry_address}")
        for address, source in targets:
            click.echo(f"Funded {address} with {ether} ETH ({source})")
        click.echo("Point nodes at it:")
        click.echo("  export " + " ".join(f"{k}={v}" for k, v in env.items()))
        click.echo("Ctrl-C stops the chain (its state is not kept).")
    sys.stdout.flush()
    try:
        local.process.wait()
        raise click.ClickException(f"anvil exited with {local.process.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
        log.close()
