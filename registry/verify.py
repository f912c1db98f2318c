"""Check a job against the chain: who coordinated it, who took part, its spec, its rounds, who
attested what, what was paid. Each check is named in the proof with its result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grid_common.hashes import model_hash as hash_model_file
from registry.client import EventRecord, JobRecord, RegistryClient, RoundRecord, to_bytes32

WEI_PER_ETHER = 10**18


@dataclass(frozen=True)
class Check:
    """One thing the proof checked, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Expected:
    """What the verifier knows on its own and the chain must match: the coordinator's address
    (a network's node info), the participants' addresses by domain name (each domain's own
    node info), and the aggregates of the rounds (the network's round list), in order."""

    coordinator: str | None = None
    participants: Mapping[str, str] | None = None
    aggregates: Sequence[str] | None = None


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
    coordinator_role: str = "none"
    names: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What failed, one sentence each."""
        return [c.detail for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def named(self, address: str) -> str:
        """An address with the domain name the verifier knows it by, if any."""
        name = self.names.get(address.lower())
        return f"{name} ({address})" if name else address

    def as_json(self) -> dict[str, Any]:
        """The proof as plain data (for `--json`)."""
        return {"ok": self.ok, "problems": list(self.problems), **asdict(self)}

    def render(self) -> str:
        """The proof as text a person can read and check transaction by transaction."""
        job = self.job
        lines = [f"Job {job.job_id}", f"  status       {job.status}"]
        lines.append(f"  coordinator  {job.coordinator} (registered as {self.coordinator_role})")
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
            lines.append(f"  [{i}] {self.named(address)}")
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
                f"  {self.named(a.participant)} attested "
                f"{a.model_hash}{_mark(self.model_hash, a.model_hash)} "
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
                lines.append(
                    f"  payout {self.named(p.participant)}: {what} (contribution {p.contribution})"
                )
        if self.model_hash is not None:
            lines.append(f"Your model's hash: 0x{self.model_hash.removeprefix('0x')}")
        lines.append("Checks")
        for c in self.checks:
            lines.append(f"  {'✓' if c.ok else '✗'} {c.name}: {c.detail}")
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
    expected: Expected | None = None,
    from_block: int = 0,
) -> Proof:
    """Read a job's records and check them against a model file (or its hash), the spec hash
    the caller recomputed and what else the caller knows on its own (`expected`). The proof
    names every check and its result; `proof.ok` says whether all passed."""
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
        coordinator_role=client.node(job.coordinator).role,
    )
    _check(proof, expected or Expected())
    return proof


def verify_on_chain(
    rpc_url: str,
    registry_address: str,
    job_id: str,
    *,
    model: Path | str | bytes | None = None,
    model_hash: str | None = None,
    spec_hash: str | None = None,
    expected: Expected | None = None,
    from_block: int = 0,
) -> Proof:
    """`verify_job` with a read-only client of its own (what `job.verify()` calls)."""
    return verify_job(
        RegistryClient(rpc_url, registry_address),
        job_id,
        model=model,
        model_hash=model_hash,
        spec_hash=spec_hash,
        expected=expected,
        from_block=from_block,
    )


def _check(proof: Proof, expected: Expected) -> None:
    job = proof.job
    if expected.participants is not None:
        proof.names = {a.lower(): n for n, a in expected.participants.items()}
    _check_coordinator(proof, expected.coordinator)
    if expected.participants is not None:
        _check_participants(proof, expected.participants)
    if proof.spec_hash is not None:
        same = proof.spec_hash == job.spec_hash
        proof.check(
            "spec hash",
            same,
            f"the job was created with {job.spec_hash}, as your spec hashes"
            if same
            else f"the spec you hold hashes to {proof.spec_hash}, but the job was created with "
            f"{job.spec_hash}: a different model, plan, dataset list or round setting",
        )
    _check_rounds(proof, expected.aggregates)
    _check_attestations(proof)


def _check_coordinator(proof: Proof, address: str | None) -> None:
    job = proof.job
    if address is None:
        proof.check(
            "coordinator",
            proof.coordinator_role != "none",
            f"{job.coordinator} is a registered {proof.coordinator_role}",
        )
        return
    wanted = address.lower()
    ok = job.coordinator.lower() == wanted and proof.coordinator_role == "network"
    proof.check(
        "coordinator",
        ok,
        f"{job.coordinator} is the network you asked, registered as a network"
        if ok
        else f"the job's coordinator {job.coordinator} (registered as "
        f"{proof.coordinator_role}) is not the network you asked, {address}, registered as a "
        "network",
    )


def _check_participants(proof: Proof, expected: Mapping[str, str]) -> None:
    on_chain = {a.lower() for a in proof.participants}
    wanted = {a.lower(): name for name, a in expected.items()}
    missing = [f"{name} ({a})" for a, name in wanted.items() if a not in on_chain]
    extra = [a for a in proof.participants if a.lower() not in wanted]
    ok = not missing and not extra
    detail = f"the {len(wanted)} domains that approved, and no other"
    if missing:
        detail = f"approved but not a participant: {', '.join(missing)}"
    if extra:
        detail = (detail + "; " if missing else "") + (
            f"a participant that did not approve: {', '.join(extra)}"
        )
    proof.check("participants", ok, detail)


def _check_rounds(proof: Proof, aggregates: Sequence[str] | None) -> None:
    job = proof.job
    if len(proof.rounds) != job.rounds:
        proof.check(
            "rounds",
            False,
            f"the contract counts {job.rounds} rounds but {len(proof.rounds)} RoundLogged "
            "events were found (search from an earlier block)",
        )
        return
    if aggregates is None:
        proof.check("rounds", True, f"{job.rounds} logged")
        return
    logged = [r.aggregate_hash.lower() for r in proof.rounds]
    wanted = ["0x" + a.lower().removeprefix("0x") for a in aggregates]
    ok = logged == wanted
    proof.check(
        "rounds",
        ok,
        f"{len(wanted)} rounds, each aggregate as the network published it"
        if ok
        else f"the network published {len(wanted)} round aggregates, the chain logs "
        f"{len(logged)} and they differ",
    )


def _check_attestations(proof: Proof) -> None:
    job = proof.job
    # Agreement on the finalized hash (or, before, on your model's); your model is checked
    # against the finalized hash below.
    wanted = job.model_hash if job.status == "finalized" else proof.model_hash
    by_participant = {a.participant.lower(): a.model_hash for a in proof.attestations}
    silent = [proof.named(p) for p in proof.participants if p.lower() not in by_participant]
    other = [
        proof.named(p)
        for p in proof.participants
        if wanted is not None and by_participant.get(p.lower(), wanted) != wanted
    ]
    if other:
        proof.check(
            "attestations",
            False,
            f"attested a different hash: {', '.join(other)}",
        )
    if job.status != "finalized":
        why = f"{len(silent)} participant(s) have not attested yet" if silent else "not settled yet"
        proof.check("finalized", False, f"the job is {job.status}, not finalized ({why})")
    elif silent:
        proof.check("attestations", False, f"did not attest: {', '.join(silent)}")
    elif not other:
        proof.check(
            "attestations",
            True,
            f"{len(proof.attestations)} of {len(proof.participants)} attested the same hash",
        )
    if proof.model_hash is None:
        return
    final = job.model_hash if job.status == "finalized" else None
    if final is not None:
        ok = proof.model_hash == final
        proof.check(
            "your model",
            ok,
            "hashes to the model the job was finalized with"
            if ok
            else f"your model does not match: it hashes to {proof.model_hash}, but the "
            f"participants attested {final}. It is not the model this job produced; even one "
            "changed byte changes the hash",
        )
    elif any(a.model_hash != proof.model_hash for a in proof.attestations):
        proof.check(
            "your model",
            False,
            f"your model hashes to {proof.model_hash}, which not every attestation names",
        )


def _mark(expected: str | None, actual: str) -> str:
    if expected is None:
        return ""
    return "  ✓ matches" if expected == actual else "  ✗ DIFFERS"


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _ether(wei: int) -> str:
    return f"{wei / WEI_PER_ETHER:.6g} ETH"
