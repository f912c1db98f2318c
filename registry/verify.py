"""Check a job against the chain: its spec, its rounds, who attested what, what was paid."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grid_common.hashes import model_hash as hash_model_file
from registry.client import EventRecord, JobRecord, RegistryClient, RoundRecord, to_bytes32

WEI_PER_ETHER = 10**18


@dataclass(frozen=True)
class Attestation:
    participant: str
    model_hash: str
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class PayoutLine:
    participant: str
    eligible: bool
    deposit_returned: int
    forfeited: int
    reward: int
    contribution: int


@dataclass
class Proof:
    """What the chain says about a job, and whether it backs what the caller holds."""

    job: JobRecord
    participants: list[str]
    created: EventRecord | None
    rounds: list[RoundRecord]
    attestations: list[Attestation]
    finalized: EventRecord | None
    payouts: list[PayoutLine]
    model_hash: str | None = None
    spec_hash: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The proof as plain data (for `--json`)."""
        return {"ok": self.ok, "problems": list(self.problems), **asdict(self)}

    def render(self) -> str:
        """The proof as text a person can read and check transaction by transaction."""
        job = self.job
        lines = [f"Job {job.job_id}", f"  status       {job.status}"]
        lines.append(f"  coordinator  {job.coordinator}")
        where = (
            f" (tx {self.created.tx_hash}, block {self.created.block_number})"
            if self.created
            else ""
        )
        lines.append(f"  created{where}")
        lines.append(f"  spec hash    {job.spec_hash}" + _mark(self.spec_hash, job.spec_hash))
        if job.deadline:
            deadline = datetime.fromtimestamp(job.deadline, UTC).strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"  deadline     {deadline}")
        if job.bounty or job.stake:
            lines.append(
                f"  bounty       {_ether(job.bounty)}; stake per domain {_ether(job.stake)}"
            )
        lines.append(f"Participants ({len(self.participants)})")
        for i, address in enumerate(self.participants):
            lines.append(f"  [{i}] {address}")
        lines.append(f"Rounds ({len(self.rounds)})")
        for r in self.rounds:
            taking_part = ", ".join(
                f"[{i}] {n} samples" if n else f"[{i}] did not report"
                for i, n in zip(_bits(r.counted), r.samples, strict=True)
            )
            lines.append(
                f"  round {r.round}: aggregate {r.aggregate_hash} — {taking_part} "
                f"(tx {r.tx_hash}, block {r.block_number})"
            )
        lines.append(f"Attestations ({len(self.attestations)} of {len(self.participants)})")
        for a in self.attestations:
            lines.append(
                f"  {a.participant} attested {a.model_hash}{_mark(self.model_hash, a.model_hash)} "
                f"(tx {a.tx_hash}, block {a.block_number})"
            )
        if self.finalized is not None:
            lines.append(
                f"Finalized: model {job.model_hash}{_mark(self.model_hash, job.model_hash)} "
                f"(tx {self.finalized.tx_hash}, block {self.finalized.block_number})"
            )
            for p in self.payouts:
                if p.eligible:
                    what = f"reward {_ether(p.reward)}, deposit back {_ether(p.deposit_returned)}"
                else:
                    what = f"not eligible, deposit forfeited {_ether(p.forfeited)}"
                lines.append(f"  payout {p.participant}: {what} (contribution {p.contribution})")
        if self.model_hash is not None:
            lines.append(f"Your model's hash: 0x{self.model_hash.removeprefix('0x')}")
        if self.ok:
            lines.append(
                "VERIFIED: the chain backs this job"
                + (" and your model." if self.model_hash else ".")
            )
        else:
            lines.append("NOT VERIFIED:")
            lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


def verify_job(
    client: RegistryClient,
    job_id: str,
    *,
    model: Path | str | bytes | None = None,
    model_hash: str | None = None,
    spec_hash: str | None = None,
    from_block: int = 0,
) -> Proof:
    """Read a job's records and check them against a model file (or its hash) and the spec
    hash the caller recomputed. The proof lists every problem; `proof.ok` says whether none."""
    job_id = "0x" + to_bytes32(job_id).hex()
    if model is not None:
        model_hash = hash_model_file(Path(model) if isinstance(model, str) else model)
    if model_hash is not None:
        model_hash = "0x" + to_bytes32(model_hash).hex()
    if spec_hash is not None:
        spec_hash = "0x" + to_bytes32(spec_hash).hex()
    job = client.job(job_id)
    if not job.exists:
        raise LookupError(f"job {job_id} is not on the registry at {client.address}")

    participants = client.participants(job_id)
    created = next(iter(client.events("JobCreated", from_block=from_block, jobId=job_id)), None)
    rounds = client.rounds(job_id, from_block=from_block)
    attested = [
        Attestation(e.args["participant"], e.args["modelHash"], e.tx_hash, e.block_number)
        for e in client.events("ResultAttested", from_block=from_block, jobId=job_id)
    ]
    finalized = next(iter(client.events("JobFinalized", from_block=from_block, jobId=job_id)), None)
    payouts = [
        PayoutLine(
            participant=e.args["participant"],
            eligible=bool(e.args["eligible"]),
            deposit_returned=int(e.args["depositReturned"]),
            forfeited=int(e.args["forfeited"]),
            reward=int(e.args["reward"]),
            contribution=int(e.args["contribution"]),
        )
        for e in client.events("Payout", from_block=from_block, jobId=job_id)
    ]
    proof = Proof(
        job=job,
        participants=participants,
        created=created,
        rounds=rounds,
        attestations=attested,
        finalized=finalized,
        payouts=payouts,
        model_hash=model_hash,
        spec_hash=spec_hash,
    )
    _check(proof)
    return proof


def verify_on_chain(
    rpc_url: str,
    registry_address: str,
    job_id: str,
    *,
    model: Path | str | bytes | None = None,
    model_hash: str | None = None,
    spec_hash: str | None = None,
    from_block: int = 0,
) -> Proof:
    """`verify_job` with a read-only client of its own (what `job.verify()` calls)."""
    return verify_job(
        RegistryClient(rpc_url, registry_address),
        job_id,
        model=model,
        model_hash=model_hash,
        spec_hash=spec_hash,
        from_block=from_block,
    )


def _check(proof: Proof) -> None:
    job, problems = proof.job, proof.problems
    if proof.spec_hash is not None and proof.spec_hash != job.spec_hash:
        problems.append(
            f"the spec you hold hashes to {proof.spec_hash}, but the job was created with "
            f"{job.spec_hash}: a different model, plan or dataset list"
        )
    if len(proof.rounds) != job.rounds:
        problems.append(
            f"the contract counts {job.rounds} rounds but {len(proof.rounds)} RoundLogged "
            "events were found (search from an earlier block)"
        )
    if job.status != "finalized":
        missing = len(proof.participants) - len(proof.attestations)
        why = f"{missing} participant(s) have not attested yet" if missing else "not settled yet"
        problems.append(f"the job is {job.status}, not finalized ({why})")
    if proof.model_hash is None:
        return
    final = job.model_hash if job.status == "finalized" else None
    if final is not None and proof.model_hash != final:
        problems.append(
            f"your model does not match: it hashes to {proof.model_hash}, but the participants "
            f"attested {final}. It is not the model this job produced; even one changed byte "
            "changes the hash"
        )
    elif final is None and any(a.model_hash != proof.model_hash for a in proof.attestations):
        problems.append(
            f"your model hashes to {proof.model_hash}, which not every attestation names"
        )


def _mark(expected: str | None, actual: str) -> str:
    if expected is None:
        return ""
    return "  ✓ matches" if expected == actual else "  ✗ DIFFERS"


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _ether(wei: int) -> str:
    return f"{wei / WEI_PER_ETHER:.6g} ETH"
