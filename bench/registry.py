"""Gas of every GridRegistry call, a federated job's gas and cost on chain, transactions per
second through the outbox (one node, then a network and 3 domains at once), and (with `--job`)
a data-centric job's wall time with registry writes on against off.

Everything runs against a fresh anvil on a free loopback port.

    .venv/bin/python bench/registry.py [--entries 500] [--database-url URL] [--job]
        [--gwei 20] [--eth-usd 3000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the `registry` package: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from eth_account import Account  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from domain import migrate  # noqa: E402
from domain.models import RegistryOutboxEntry, RegistrySenderLease  # noqa: E402
from grid_common.db import make_engine  # noqa: E402
from registry.chain import ANVIL_DEPLOYER_KEY, LocalChain, fund, rpc, start_local_chain  # noqa: E402
from registry.client import RegistryClient, deploy_registry, job_id_of, round_mask  # noqa: E402
from registry.outbox import Outbox  # noqa: E402
from registry.sender import OutboxSender  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ETHER = 10**18
AIM = 60_000
# DCAI's anchor: one Naive Bayes update on chain costs at most this much gas.
DCAI_NAIVE_BAYES_UPDATE = 113_704


def h() -> str:
    return "0x" + secrets.token_hex(32)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chain_now(chain: LocalChain) -> int:
    return int(rpc(chain.rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


def client(chain: LocalChain, role: str | None = None) -> RegistryClient:
    account = Account.create()
    fund(chain.rpc_url, [account.address], 1000)
    made = RegistryClient(chain.rpc_url, chain.registry_address, account)
    if role:
        made.register(role, h())  # type: ignore[arg-type]
    return made


def gas_table(chain: LocalChain) -> list[tuple[str, int, str]]:
    rows: list[tuple[str, int, str]] = []
    _, receipt = deploy_registry(chain.rpc_url, Account.from_key(ANVIL_DEPLOYER_KEY))
    rows.append(("deploy", int(receipt["gasUsed"]), ""))
    first = client(chain)
    rows.append(("register", int(first.register("domain", h())["gasUsed"]), "first time"))
    rows.append(("anchor", int(first.anchor(1, h())["gasUsed"]), ""))
    deadline = chain_now(chain) + 3600

    # A data-centric job: the domain coordinates and is the only participant.
    domain = first
    gas = domain.create_job("dc", h(), [domain.sender], deadline=deadline, bounty=ETHER)["gasUsed"]
    rows.append(("create job", int(gas), "1 participant, with bounty"))
    job = job_id_of(domain.sender, "dc")
    model = h()
    counted, samples = round_mask([domain.sender], {domain.sender: 1500})
    rows.append(
        (
            "log round",
            int(domain.log_round(job, model, counted, samples)["gasUsed"]),
            "1 participant",
        )
    )
    rows.append(("attest", int(domain.attest(job, model)["gasUsed"]), ""))
    rows.append(("finalize", int(domain.finalize(job)["gasUsed"]), "1 participant, 1 round"))
    rows.append(("withdraw", int(domain.withdraw()["gasUsed"]), ""))

    # A federated job: a network coordinates three staked domains over five rounds.
    network = client(chain, "network")
    domains = [client(chain, "domain") for _ in range(3)]
    addresses = [d.sender for d in domains]
    rows.append(("set association", int(network.set_association(addresses[0])["gasUsed"]), ""))
    gas = network.create_job("fl", h(), addresses, deadline=deadline, stake=ETHER, bounty=ETHER)[
        "gasUsed"
    ]
    rows.append(("create job", int(gas), "3 participants, stake and bounty"))
    job = job_id_of(network.sender, "fl")
    rows.append(("fund bounty", int(client(chain).fund_bounty(job, ETHER)["gasUsed"]), ""))
    rows.append(("deposit stake", int(domains[0].deposit_stake(job, ETHER)["gasUsed"]), ""))
    for d in domains[1:]:
        d.deposit_stake(job, ETHER)
    counted, samples = round_mask(addresses, {a: 500 for a in addresses})
    round_gas = [int(network.log_round(job, h(), counted, samples)["gasUsed"]) for _ in range(5)]
    rows.append(("log round", max(round_gas), "3 participants (largest of 5)"))
    model = h()
    attest_gas = [int(d.attest(job, model)["gasUsed"]) for d in domains]
    rows.append(("attest", max(attest_gas), "3 participants (largest)"))
    rows.append(("finalize", int(network.finalize(job)["gasUsed"]), "3 participants, 5 rounds"))
    return rows


def log_round_gas(chain: LocalChain, participants: int, deadline: int) -> int:
    """Gas of one logRound in which every one of `participants` domains is counted."""
    network = client(chain, "network")
    addresses = [client(chain, "domain").sender for _ in range(participants)]
    key = f"rounds-{participants}"
    network.create_job(key, h(), addresses, deadline=deadline)
    job = job_id_of(network.sender, key)
    counted, samples = round_mask(addresses, {a: 500 + i for i, a in enumerate(addresses)})
    # The second round: the first also turns the job's round counter from zero.
    network.log_round(job, h(), counted, samples)
    return int(network.log_round(job, h(), counted, samples)["gasUsed"])


def federated_job_gas(chain: LocalChain, rounds: int, deadline: int) -> dict[str, int]:
    """Gas of a whole federated job as the nodes send it: the network creates it (3 staked
    domains, a bounty), logs `rounds` rounds, each domain stakes and attests, the network
    finalizes; every domain withdraws."""
    network = client(chain, "network")
    domains = [client(chain, "domain") for _ in range(3)]
    addresses = [d.sender for d in domains]
    stake = ETHER // 100
    gas = {
        "create job": int(
            network.create_job(
                "whole", h(), addresses, deadline=deadline, stake=stake, bounty=ETHER // 20
            )["gasUsed"]
        )
    }
    job = job_id_of(network.sender, "whole")
    gas["deposit stake x3"] = sum(int(d.deposit_stake(job, stake)["gasUsed"]) for d in domains)
    counted, samples = round_mask(addresses, {a: 600 for a in addresses})
    gas[f"log round x{rounds}"] = sum(
        int(network.log_round(job, h(), counted, samples)["gasUsed"]) for _ in range(rounds)
    )
    model = h()
    gas["attest x3"] = sum(int(d.attest(job, model)["gasUsed"]) for d in domains)
    gas["finalize"] = int(network.finalize(job)["gasUsed"])
    gas["withdraw x3"] = sum(int(d.withdraw()["gasUsed"]) for d in domains)
    return gas


def nodes_at_once(chain: LocalChain, entries: int, scratch: Path) -> tuple[int, float]:
    """A network and 3 domains, each with its own outbox and sender, landing `entries`
    anchors each at the same time (each node its own SQLite file, as separate apps have);
    returns the total and the seconds until all landed."""
    senders = []
    for i in range(4):
        engine = make_engine(f"sqlite:///{scratch / f'node-{i}.db'}")
        migrate.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        node = client(chain, "network" if i == 0 else "domain")
        sender = OutboxSender(sessions, RegistryOutboxEntry, RegistrySenderLease, node)
        outbox = Outbox(RegistryOutboxEntry)
        with sessions() as session, session.begin():
            for seq in range(1, entries + 1):
                outbox.anchor(session, seq, h())
        senders.append(sender)
    errors: list[BaseException] = []

    def drain(sender: OutboxSender) -> None:
        try:
            sender.run_until_idle(timeout_s=600)
        except BaseException as exc:  # reported after the others finish
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(s,)) for s in senders]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return 4 * entries, time.perf_counter() - started


def outbox_rate(
    chain: LocalChain, entries: int, database_url: str, scratch: Path
) -> tuple[float, float]:
    """Seconds to enqueue `entries` anchors in one transaction, and to land them all."""
    url = database_url or f"sqlite:///{scratch / 'outbox.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    node = client(chain, "domain")
    sender = OutboxSender(
        sessions, RegistryOutboxEntry, RegistrySenderLease, node, max_in_flight=64
    )
    outbox = Outbox(RegistryOutboxEntry)
    started = time.perf_counter()
    with sessions() as session, session.begin():
        for seq in range(1, entries + 1):
            outbox.anchor(session, seq, h())
    enqueued = time.perf_counter()
    sender.run_until_idle(timeout_s=600)
    landed = time.perf_counter()
    anchored = [e.args["seq"] for e in node.events("AuditAnchored", node=node.sender)]
    assert anchored == list(range(1, entries + 1)), "entries landed out of order or went missing"
    engine.dispose()
    return enqueued - started, landed - enqueued


def job_wall_time(
    chain: LocalChain, epochs: int, database_url: str, scratch: Path
) -> tuple[float, float]:
    """The data-centric benchmark's training time with registry writes off, then on."""
    sys.path.insert(0, str(ROOT / "bench"))
    from data_centric import through_grid, write_digits

    csv = write_digits(scratch)
    saved = dict(os.environ)
    try:
        for name in ("GRID_CHAIN_RPC_URL", "GRID_REGISTRY_ADDRESS"):
            os.environ.pop(name, None)
        (scratch / "off").mkdir()
        off = through_grid(csv, epochs, scratch / "off", database_url)["train_s"]
        key = Account.create()
        fund(chain.rpc_url, [key.address])
        os.environ.update({**chain.environment(), "GRID_ETH_PRIVATE_KEY": key.key.hex()})
        (scratch / "on").mkdir()
        on = through_grid(csv, epochs, scratch / "on", database_url)["train_s"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return off, on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=500, help="Outbox entries to send.")
    parser.add_argument("--database-url", default="", help="Outbox database (default SQLite).")
    parser.add_argument("--job", action="store_true", help="Also time a data-centric job on/off.")
    parser.add_argument("--epochs", type=int, default=20, help="Epochs of that job.")
    parser.add_argument("--rounds", type=int, default=20, help="Rounds of the federated job.")
    parser.add_argument("--gwei", type=float, default=20.0, help="Gas price for the USD figure.")
    parser.add_argument("--eth-usd", type=float, default=3000.0, help="ETH price in USD.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as folder:
        scratch = Path(folder)
        log = (scratch / "anvil.log").open("wb")
        chain = start_local_chain(free_port(), log=log)
        try:
            rows = gas_table(chain)
            deadline = chain_now(chain) + 3600
            per_round = {n: log_round_gas(chain, n, deadline) for n in (3, 8)}
            whole = federated_job_gas(chain, args.rounds, deadline)
            enqueue_s, land_s = outbox_rate(chain, args.entries, args.database_url, scratch)
            together = nodes_at_once(chain, args.entries // 4, scratch)
            job = (
                job_wall_time(chain, args.epochs, args.database_url, scratch) if args.job else None
            )
        finally:
            chain.stop()
            log.close()

    print(f"{'call':<18} {'gas':>9}   note")
    for name, gas, note in rows:
        flag = "  (aim ≤ 60,000)" if name in ("log round", "attest") else ""
        over = "  OVER AIM" if flag and gas > AIM else ""
        print(f"{name:<18} {gas:>9,}   {note}{flag}{over}")
    backend = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print()
    print(
        f"outbox ({backend}), {args.entries} anchors enqueued in one transaction: {enqueue_s:.3f} s"
    )
    print(
        f"outbox sender to anvil, signed, sent, receipts recorded, in order: {land_s:.2f} s "
        f"= {args.entries / land_s:.0f} tx/s"
    )
    sent, seconds = together
    print(
        f"network + 3 domains at once, {sent // 4} anchors each: {sent} landed in "
        f"{seconds:.2f} s = {sent / seconds:.0f} tx/s"
    )
    print()
    for n, gas in per_round.items():
        over = "  OVER AIM" if gas > AIM else ""
        print(f"log round, {n} participants counted: {gas:,} gas  (aim ≤ 60,000){over}")
    total = sum(whole.values())
    print(f"a whole {args.rounds}-round federated job of 3 domains (stake, bounty):")
    for name, gas in whole.items():
        print(f"  {name:<18} {gas:>10,}")
    usd = total * args.gwei * 1e-9 * args.eth_usd
    print(
        f"  {'total':<18} {total:>10,} gas = {total * args.gwei * 1e-9:.5f} ETH at "
        f"{args.gwei:g} gwei = ${usd:.2f} at ${args.eth_usd:,.0f}/ETH"
    )
    per = whole[f"log round x{args.rounds}"] / args.rounds
    print(
        f"  per round {per:,.0f} gas, against DCAI's Naive Bayes update at ≤ "
        f"{DCAI_NAIVE_BAYES_UPDATE:,} gas ({per / DCAI_NAIVE_BAYES_UPDATE:.0%})"
    )
    if job is not None:
        off, on = job
        print()
        print(f"data-centric job, {args.epochs} epochs: registry off {off:.2f} s, on {on:.2f} s")
        print(f"ratio on/off (aim: 1.05 or less): {on / off:.3f}")


if __name__ == "__main__":
    main()
