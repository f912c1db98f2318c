"""`grid registry …`: deploy the on-chain registry, check jobs against it, anchor the
audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from grid_cli.commands.onchain import registry_errors, show_proof
from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.commands.session import open_client

RPC_ENV = "GRID_CHAIN_RPC_URL"
REGISTRY_ENV = "GRID_REGISTRY_ADDRESS"


@click.group()
def registry() -> None:
    """The on-chain registry: deploy it, check jobs against it, see a domain's writes."""


def rpc_option(command: Any) -> Any:
    """`--rpc`: the chain to talk to."""
    return click.option(
        "--rpc", envvar=RPC_ENV, required=True, help=f"The chain's JSON-RPC URL (or ${RPC_ENV})."
    )(command)


def registry_option(command: Any) -> Any:
    """`--registry`: the GridRegistry contract on that chain."""
    return click.option(
        "--registry",
        "registry_address",
        envvar=REGISTRY_ENV,
        required=True,
        help=f"The GridRegistry contract's address (or ${REGISTRY_ENV}).",
    )(command)


@registry.command("deploy")
@rpc_option
@click.option(
    "--data-dir",
    envvar="GRID_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sign with this node's key (default: $GRID_ETH_PRIVATE_KEY).",
)
@json_option
def registry_deploy(rpc: str, data_dir: Path | None, as_json: bool) -> None:
    """Deploy the committed GridRegistry artifact to a chain; prints its address."""
    import os

    from eth_account import Account

    from registry.client import deploy_registry
    from registry.keys import KEY_ENV, load_or_create_account

    if data_dir is not None:
        account = load_or_create_account(data_dir)
    elif os.environ.get(KEY_ENV):
        account = Account.from_key(os.environ[KEY_ENV].strip())
    else:
        raise click.ClickException(f"no key to deploy with: pass --data-dir or set {KEY_ENV}")
    try:
        address, receipt = deploy_registry(rpc, account)
    except registry_errors() as exc:
        raise click.ClickException(f"deployment failed: {exc}") from None
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    if as_json:
        print_json(
            {
                "registry_address": address,
                "tx_hash": tx_hash,
                "block_number": receipt["blockNumber"],
                "deployer": account.address,
            }
        )
    else:
        click.echo(
            f"GridRegistry deployed at {address} (tx {tx_hash}, block {receipt['blockNumber']})"
        )
        click.echo(f"  export {REGISTRY_ENV}={address}")


@registry.command("verify")
@click.argument("job_id")
@rpc_option
@registry_option
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The model weights file you received; its sha256 must be the attested hash.",
)
@click.option("--model-hash", help="The model's sha256, instead of --model.")
@click.option("--spec-hash", help="The spec hash you recomputed (grid_common.hashes.spec_hash).")
@click.option("--from-block", default=0, show_default=True, type=click.IntRange(0))
@json_option
def registry_verify(
    job_id: str,
    rpc: str,
    registry_address: str,
    model: Path | None,
    model_hash: str | None,
    spec_hash: str | None,
    from_block: int,
    as_json: bool,
) -> None:
    """Print the on-chain proof of a job (JOB_ID: its 0x id) and check your model against it;
    exit status 1 when the chain does not back it."""
    from registry.client import RegistryClient
    from registry.verify import verify_job

    if model is not None and model_hash is not None:
        raise click.UsageError("pass --model or --model-hash, not both")
    show_proof(
        lambda: verify_job(
            RegistryClient(rpc, registry_address),
            job_id,
            model=model,
            model_hash=model_hash,
            spec_hash=spec_hash,
            from_block=from_block,
        ),
        as_json,
    )


def _account(data_dir: Path | None, key_file: Path | None) -> Any:
    """The signing key: a node's (its data dir) or your own (a key file, else
    $GRID_ETH_PRIVATE_KEY)."""
    from registry.bounty import scientist_account
    from registry.keys import load_or_create_account

    try:
        if data_dir is not None:
            return load_or_create_account(data_dir)
        return scientist_account(key_file)
    except (PermissionError, ValueError, OSError) as exc:
        raise click.ClickException(
            f"{exc} (or pass --data-dir for a node's key, --key-file for your own)"
        ) from None


def key_options(command: Any) -> Any:
    """`--data-dir` (a node's key) or `--key-file` (yours); else $GRID_ETH_PRIVATE_KEY."""
    command = click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Your own key file (owner-only permissions), e.g. the one you fund bounties from.",
    )(command)
    return click.option(
        "--data-dir",
        envvar="GRID_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="A node's data dir (its key is made there if missing).",
    )(command)


@registry.command("address")
@key_options
@json_option
def registry_address_command(data_dir: Path | None, key_file: Path | None, as_json: bool) -> None:
    """Print the Ethereum address a key signs with: a node's (--data-dir), or yours
    (--key-file, else $GRID_ETH_PRIVATE_KEY: what bounties are paid from)."""
    address = str(_account(data_dir, key_file).address)
    if as_json:
        found: dict[str, Any] = {"address": address}
        if data_dir is not None:
            found["data_dir"] = str(data_dir.resolve())
        print_json(found)
    else:
        click.echo(address)


@registry.command("balance")
@click.argument("address", required=False)
@rpc_option
@registry_option
@key_options
@json_option
def registry_balance(
    address: str | None,
    rpc: str,
    registry_address: str,
    data_dir: Path | None,
    key_file: Path | None,
    as_json: bool,
) -> None:
    """Show what the registry holds for an address (rewards, returned stakes, reclaimed
    bounties), ready to withdraw; ADDRESS, else the key's own (see `grid registry address`)."""
    who = address or str(_account(data_dir, key_file).address)
    wei = _balance(rpc, registry_address, who)
    if as_json:
        print_json({"address": who, "balance_wei": str(wei)})
    else:
        click.echo(f"{who}: {_ether(wei)} to withdraw")


def _balance(rpc: str, registry_address: str, address: str) -> int:
    """What the registry holds for `address`, ready to withdraw (wei); a chain error as one
    line."""
    from registry.client import RegistryClient

    try:
        return RegistryClient(rpc, registry_address).balance(address)
    except registry_errors() as exc:
        raise click.ClickException(str(exc)) from None


def _ether(wei: int) -> str:
    from registry.verify import WEI_PER_ETHER

    return f"{wei / WEI_PER_ETHER:.6g} ETH"


@registry.command("withdraw")
@rpc_option
@registry_option
@key_options
@json_option
def registry_withdraw(
    rpc: str, registry_address: str, data_dir: Path | None, key_file: Path | None, as_json: bool
) -> None:
    """Pay out everything the registry holds for the key's address (a node's rewards with
    --data-dir; yours with --key-file or $GRID_ETH_PRIVATE_KEY)."""
    from registry.client import RegistryClient
    from registry.verify import WEI_PER_ETHER

    account = _account(data_dir, key_file)
    try:
        client = RegistryClient(rpc, registry_address, account)
        wei = client.balance(account.address)
        if wei == 0:
            raise click.ClickException(f"{account.address} has nothing to withdraw")
        receipt = client.withdraw()
    except registry_errors() as exc:
        raise click.ClickException(str(exc)) from None
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    if as_json:
        print_json({"address": account.address, "withdrawn_wei": str(wei), "tx_hash": tx_hash})
    else:
        click.echo(f"Withdrew {wei / WEI_PER_ETHER:.6g} ETH to {account.address} (tx {tx_hash})")


@registry.command("status")
@click.option(
    "--rpc",
    envvar=RPC_ENV,
    help=f"The chain's JSON-RPC URL (or ${RPC_ENV}): with it, the balances too.",
)
@click.option(
    "--registry",
    "registry_address",
    envvar=REGISTRY_ENV,
    help=f"The registry to read balances from (or ${REGISTRY_ENV}; default: the domain's).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own key file: show your balance too (else $GRID_ETH_PRIVATE_KEY, if set).",
)
@url_option
@json_option
def registry_status(
    rpc: str | None,
    registry_address: str | None,
    key_file: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Show whether the signed-in domain records on chain, how its outbox stands and, given
    the chain (--rpc), what the registry holds for the domain's key and for yours (your key
    file, else $GRID_ETH_PRIVATE_KEY): what `grid registry withdraw` pays out."""
    status = open_client(url).registry_status()
    balances = _status_balances(status, rpc, registry_address, key_file)
    if as_json:
        print_json({**status.model_dump(mode="json"), "balances": balances})
        return
    if not status.enabled:
        click.echo(status.message)
    rows: list[tuple[str, Any]] = []
    if status.enabled:
        rows += [
            ("node address", status.node_address),
            ("registry", status.registry_address),
            ("state", status.message),
        ]
    if status.outbox is not None:
        rows += [(f"outbox {k}", v) for k, v in status.outbox.model_dump().items()]
    if status.last_anchor is not None:
        a = status.last_anchor
        rows.append(("last anchor", f"entry {a.seq} {a.head_hash[:18]}… {a.status}"))
    if status.last_failure is not None:
        f = status.last_failure
        rows.append(("last failure", f"{f.op}: {f.error}"))
    for who, found in balances.items():
        rows.append((f"{who} balance", f"{_ether(int(found['balance_wei']))} ({found['address']})"))
    if rows:
        print_table("Registry", ["field", "value"], rows)


def _status_balances(
    status: Any, rpc: str | None, registry_address: str | None, key_file: Path | None
) -> dict[str, dict[str, str]]:
    """The withdrawable balances `status` shows: the node's key's, when the domain records on
    chain, and yours, when you have a key; none without a chain to read them from."""
    import os

    from registry.keys import KEY_ENV

    registry = registry_address or status.registry_address
    if rpc is None or registry is None:
        if key_file is not None:
            raise click.UsageError(
                f"your balance is read from the chain: pass --rpc (or set {RPC_ENV})"
                + ("" if registry else f" and --registry (or set {REGISTRY_ENV})")
            )
        return {}
    owners: dict[str, str] = {}
    if status.node_address:
        owners["node"] = status.node_address
    if key_file is not None or os.environ.get(KEY_ENV):
        owners["your"] = str(_account(None, key_file).address)
    return {
        who: {"address": address, "balance_wei": str(_balance(rpc, registry, address))}
        for who, address in owners.items()
    }


@registry.command("anchor")
@url_option
@json_option
def registry_anchor(url: str | None, as_json: bool) -> None:
    """Anchor the signed-in domain's audit-log head on chain now."""
    queued = open_client(url).anchor_audit_log()
    if as_json:
        print_json(queued)
    else:
        click.echo(f"Anchor of audit entry {queued.seq} ({queued.head_hash[:18]}…) queued.")
