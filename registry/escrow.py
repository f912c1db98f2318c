"""What a job holds in escrow on chain and what it paid out, as a node's console shows it.

Read from the chain through the node's own configuration, never from what a domain says:
the bounty escrowed, the stake each participant deposits, and after finalize each
participant's `Payout` (its reward by contribution, its stake back or forfeited). Addresses
are named from the reading node's own records (`names`); one it does not know shows as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from registry.client import RegistryClient
from registry.errors import RegistryError


@dataclass(frozen=True)
class PayoutLine:
    """One participant's settlement: reward, stake back or forfeited, its contribution."""

    address: str
    name: str
    eligible: bool
    reward_wei: int
    deposit_returned_wei: int
    forfeited_wei: int
    contribution: int


@dataclass(frozen=True)
class JobEscrow:
    """A chain job's escrow and payouts; `error` says why the chain could not be read."""

    job_id: str
    status: str = ""
    bounty_wei: int = 0
    stake_wei: int = 0
    participants: list[tuple[str, str]] = field(default_factory=list)
    payouts: list[PayoutLine] = field(default_factory=list)
    error: str | None = None


def read_escrow(
    rpc_url: str, registry_address: str, job_id: str, names: Mapping[str, str]
) -> JobEscrow:
    """The job's bounty, stake per participant and payouts as the chain holds them; an
    unreachable chain or unknown job gives a `JobEscrow` whose `error` says so."""
    known = {address.lower(): name for address, name in names.items()}

    def named(address: str) -> str:
        return known.get(address.lower(), address)

    try:
        # A page waits on this: a short timeout and no retries, so a chain that is down
        # shows as such at once.
        client = RegistryClient(rpc_url, registry_address, timeout=3.0, transport_retries=False)
        record = client.job(job_id)
        if not record.exists:
            return JobEscrow(job_id, error="not on chain yet (the network's write is queued)")
        participants = [(a, named(a)) for a in client.participants(job_id)]
        payouts = [
            PayoutLine(
                address=e.args["participant"],
                name=named(e.args["participant"]),
                eligible=bool(e.args["eligible"]),
                reward_wei=int(e.args["reward"]),
                deposit_returned_wei=int(e.args["depositReturned"]),
                forfeited_wei=int(e.args["forfeited"]),
                contribution=int(e.args["contribution"]),
            )
            for e in client.events("Payout", jobId=job_id)
        ]
    except (RegistryError, ValueError) as exc:
        return JobEscrow(job_id, error=str(exc))
    return JobEscrow(
        job_id,
        status=record.status,
        bounty_wei=record.bounty,
        stake_wei=record.stake,
        participants=participants,
        payouts=payouts,
    )
