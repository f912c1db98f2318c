"""`grid up`, `grid down` and `grid demo`: a whole grid on this machine; they register on `main`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from grid_cli.commands.options import json_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.local.grid import GridConfig, LocalGrid, down
from grid_cli.local.processes import ManagedProcess
from grid_cli.local.state import GridState, GridUpError, account_rows, node_rows

DATA_DIR_HELP = "Where the grid keeps its nodes' data, logs and state file."


def _print_grid(state: GridState, *, detached: bool) -> None:
    print_table("Local grid", ["name", "url", "what"], node_rows(state))
    print_table("Accounts", ["node", "email", "role", "password"], account_rows(state))
    network, first = state.network, state.domains[0]
    owner = first.account("owner")
    click.echo(f"Sign in as an owner:   grid login {first.url} --email {owner.email}")
    click.echo(
        f"Sign in as operator:   grid login {network.url} --email {network.accounts[0].email}"
    )
    if state.chain is not None:
        click.echo(
            "The registry:          export GRID_CHAIN_RPC_URL="
            f"{state.chain.rpc_url} GRID_REGISTRY_ADDRESS={state.chain.registry_address}"
        )
    click.echo(f"Passwords and pids are in {Path(state.data_dir) / 'grid.json'} (mode 0600).")
    stop = "" if detached else "Ctrl-C or "
    click.echo(f"Stop everything with {stop}`grid down --data-dir {state.data_dir}`.")


@click.command()
@click.option(
    "--domains",
    default=3,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Federated jobs without DP need at least 3.",
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 8), help="Per domain."
)
@click.option(
    "--data-dir",
    default=".grid",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=DATA_DIR_HELP,
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The network's port; domains take the next ones. 0: free ports for everything.",
)
@click.option("--chain-port", default=8545, show_default=True, type=click.IntRange(1, 65535))
@click.option("--chain/--no-chain", default=True, help="Run anvil with the registry deployed.")
@click.option("--detach", is_flag=True, help="Return once it is up; `grid down` stops it.")
@json_option
def up(
    domains: int,
    workers: int,
    data_dir: Path,
    port: int,
    chain_port: int,
    chain: bool,
    detach: bool,
    as_json: bool,
) -> None:
    """Start a whole grid here: chain, network, domains with demo data, workers."""
    config = GridConfig(
        data_dir=data_dir,
        domains=domains,
        workers=workers,
        port=port,
        chain_port=chain_port,
        chain=chain,
    )
    local = LocalGrid(config, supervised=not detach)
    say = (lambda _: None) if as_json else (lambda step: click.echo(f"{step}…", err=True))
    try:
        local.start(on_step=say)
    except GridUpError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; every process started so far is stopped") from None
    state = local.state()
    if as_json:
        print_json(state.to_json())
    else:
        _print_grid(state, detached=detach)
    sys.stdout.flush()
    if detach:
        return

    def exited(process: ManagedProcess) -> None:
        click.echo(f"{process.name} exited; its log: {process.log}", err=True)

    local.serve(on_exit=exited)
    if not as_json:
        click.echo("Stopped every process of the grid.")


@click.command("down")
@click.option(
    "--data-dir",
    default=".grid",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The --data-dir `grid up` was given.",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds before SIGKILL.")
@json_option
def down_command(data_dir: Path, timeout: float, as_json: bool) -> None:
    """Stop every process a `grid up` started (from any shell)."""
    try:
        report = down(data_dir, timeout=timeout)
    except GridUpError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json(dataclasses.asdict(report))
    else:
        stopped = ", ".join(report.stopped) or "nothing (it had stopped already)"
        click.echo(f"Stopped {stopped}.")
        if report.busy_ports:
            ports = ", ".join(map(str, report.busy_ports))
            click.echo(f"Port(s) {ports} are still taken, by some other program.", err=True)
    if report.left:
        pids = " ".join(map(str, report.left))
        raise click.ClickException(f"process(es) {pids} would not stop: `kill -9 {pids}`")


@click.command()
@click.option(
    "--rounds",
    default=10,
    show_default=True,
    envvar="GRID_DEMO_ROUNDS",
    type=click.IntRange(1, 100),
    help="Federated rounds (or GRID_DEMO_ROUNDS).",
)
@click.option(
    "--domains",
    default=3,
    show_default=True,
    type=click.IntRange(3, 8),
    help="At least 3: the demo's encrypted job uses no DP.",
)
@click.option(
    "--data-dir",
    default=".grid/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=DATA_DIR_HELP,
)
def demo(rounds: int, domains: int, data_dir: Path) -> None:
    """Start a local grid and train a model across its domains with CKKS, from search to proof."""
    from grid_cli.local.demo import DemoFailed, DemoOptions, run_demo

    try:
        run_demo(DemoOptions(data_dir=data_dir, domains=domains, rounds=rounds))
    except (DemoFailed, GridUpError) as exc:
        raise click.ClickException(f"{exc}\nThe nodes' logs are in {data_dir / 'logs'}.") from None
