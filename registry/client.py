"""Typed web3 client of the GridRegistry contract: signed writes, reads and event history."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import requests
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint, TxParams, TxReceipt, Wei

from registry.artifact import registry_artifact
from registry.errors import ChainUnavailable, RegistryError, decode_revert

log = logging.getLogger(__name__)

NodeRole = Literal["domain", "network"]
ROLE_IDS: dict[str, int] = {"domain": 1, "network": 2}
ROLE_NAMES = ("none", "domain", "network")
JOB_STATUSES = ("none", "open", "finalized", "failed", "cancelled")
ZERO32 = "0x" + "00" * 32
# What a transaction's gas limit adds to the estimate: state can move between the two.
GAS_MARGIN = 1.2
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


def to_bytes32(value: str | bytes) -> bytes:
    """32 bytes from a 0x-prefixed or bare hex string (a sha256 digest, a job id)."""
    if isinstance(value, bytes):
        raw = value
    else:
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise ValueError(f"not a hex string: {value!r}") from None
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


def job_key_bytes(job_key: str) -> bytes:
    """The on-chain key of a coordinator's job name (keccak-256 of its UTF-8 text)."""
    return keccak(text=job_key)


def job_id_of(coordinator: str, job_key: str) -> str:
    """The job's id on chain, as the contract's `jobIdOf(coordinator, key)` computes it."""
    encoded = encode(
        ["address", "bytes32"], [to_checksum_address(coordinator), job_key_bytes(job_key)]
    )
    return hex32(keccak(encoded))


def round_mask(participants: Sequence[str], samples: Mapping[str, int]) -> tuple[int, list[int]]:
    """The `counted` bit mask and sample list of a round, from samples keyed by address.

    Bit i stands for participants[i]; a counted participant that did not report has 0."""
    index = {to_checksum_address(p): i for i, p in enumerate(participants)}
    by_index: dict[int, int] = {}
    for address, count in samples.items():
        position = index.get(to_checksum_address(address))
        if position is None:
            raise ValueError(f"{address} is not a participant of the job")
        if count < 0:
            raise ValueError("sample counts cannot be negative")
        by_index[position] = int(count)
    counted = sum(1 << i for i in by_index)
    return counted, [by_index[i] for i in sorted(by_index)]


@dataclass(frozen=True)
class NodeRecord:
    address: str
    role: str
    key_hash: str
    reputation: int

    @property
    def registered(self) -> bool:
        return self.role != "none"


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    coordinator: str
    status: str
    stake_required: bool
    participant_count: int
    attestations: int
    rounds: int
    deadline: int
    spec_hash: str
    rounds_digest: str
    model_hash: str
    bounty: int
    stake: int
    refund_pool: int

    @property
    def exists(self) -> bool:
        return self.status != "none"


@dataclass(frozen=True)
class EventRecord:
    name: str
    args: dict[str, Any]
    tx_hash: str
    block_number: int
    log_index: int


@dataclass(frozen=True)
class RoundRecord:
    round: int
    aggregate_hash: str
    counted: int
    samples: list[int]
    tx_hash: str
    block_number: int

    def as_argument(self) -> tuple[bytes, int, list[int]]:
        return to_bytes32(self.aggregate_hash), self.counted, list(self.samples)


@dataclass(frozen=True)
class Receipt:
    status: int
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class SignedTx:
    raw: str
    tx_hash: str
    nonce: int
    gas: int


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class RegistryClient:
    """One contract on one chain; writes are signed locally by `account` (no node keys)."""

    def __init__(
        self,
        rpc_url: str,
        address: str,
        account: LocalAccount | None = None,
        *,
        timeout: float = 10.0,
        transport_retries: bool = True,
    ) -> None:
        retry: ExceptionRetryConfiguration | None = (
            ExceptionRetryConfiguration(errors=TRANSPORT_ERRORS, retries=3, backoff_factor=0.1)
            if transport_retries
            else None
        )
        provider = Web3.HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=retry
        )
        self.rpc_url = rpc_url
        self.w3 = Web3(provider)
        # Transactions are built and signed here with an explicit chain id and gas limit, so
        # web3's per-call checks (each one an extra eth_chainId round trip) and ENS lookups add
        # nothing but latency.
        for name in ("validation", "ens_name_to_address", "gas_estimate"):
            self.w3.middleware_onion.remove(name)
        self.address = to_checksum_address(address)
        self.contract: Contract = self.w3.eth.contract(
            address=self.address, abi=registry_artifact().abi
        )
        self.account = account
        self._chain_id: int | None = None

    # --- plumbing ---------------------------------------------------------------------

    @property
    def sender(self) -> str:
        if self.account is None:
            raise RegistryError("this client has no key: it can read but not write")
        return cast(str, self.account.address)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(guard(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def has_code(self) -> bool:
        """Whether a contract is deployed at the address (not an empty account)."""
        return len(guard(lambda: self.w3.eth.get_code(self.address))) > 0

    def function(self, name: str, *args: Any) -> ContractFunction:
        return cast(ContractFunction, self.contract.get_function_by_name(name)(*args))

    def fees(self) -> dict[str, int]:
        """EIP-1559 fee caps: twice the latest base fee plus the suggested priority fee."""
        block = guard(lambda: self.w3.eth.get_block("latest"))
        priority = int(guard(lambda: self.w3.eth.max_priority_fee))
        base = int(block.get("baseFeePerGas", 0) or 0)
        return {"maxFeePerGas": 2 * base + priority, "maxPriorityFeePerGas": priority}

    def estimate(self, function: ContractFunction, value: int = 0) -> int:
        params: TxParams = {"from": self.sender, "value": Wei(value)}
        return int(guard(lambda: function.estimate_gas(params)))

    def sign(
        self,
        function: ContractFunction,
        *,
        nonce: int,
        fees: Mapping[str, int],
        value: int = 0,
        gas: int | None = None,
    ) -> SignedTx:
        """A signed transaction ready to broadcast (the gas limit is estimated if not given)."""
        if self.account is None:
            raise RegistryError("this client has no key: it can read but not write")
        if gas is None:
            gas = int(self.estimate(function, value) * GAS_MARGIN) + 10_000
        tx: dict[str, Any] = {
            "to": self.address,
            "data": function._encode_transaction_data(),
            "value": value,
            "gas": gas,
            "nonce": nonce,
            "chainId": self.chain_id,
            "type": 2,
            **fees,
        }
        signed = self.account.sign_transaction(tx)
        return SignedTx(
            raw="0x" + bytes(signed.raw_transaction).hex(),
            tx_hash="0x" + bytes(signed.hash).hex(),
            nonce=nonce,
            gas=gas,
        )

    def broadcast(self, raw: str) -> None:
        """Send a signed transaction; sending one the node already has is not an error."""
        try:
            guard(lambda: self.w3.eth.send_raw_transaction(HexStr(raw)))
        except RegistryError as exc:
            if "already known" in str(exc).lower():
                return
            raise

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        """The transaction's receipt, or None while it is not mined (or unknown)."""

        def fetch() -> TxReceipt | None:
            try:
                return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
            except TransactionNotFound:
                return None

        return cast(TxReceipt | None, guard(fetch))

    def receipts(self, tx_hashes: Sequence[str]) -> dict[str, Receipt | None]:
        """Receipts of many transactions in one JSON-RPC batch (None: not mined yet)."""
        if not tx_hashes:
            return {}
        provider = cast(HTTPProvider, self.w3.provider)
        calls = [(RPCEndpoint("eth_getTransactionReceipt"), [h]) for h in tx_hashes]
        answers = guard(lambda: provider.make_batch_request(calls))
        if not isinstance(answers, list):
            raise RegistryError(f"receipt batch refused: {answers.get('error')}")
        found: dict[str, Receipt | None] = {}
        for tx_hash, answer in zip(tx_hashes, answers, strict=True):
            result = answer.get("result")
            if "error" in answer:
                raise RegistryError(f"receipt of {tx_hash}: {answer['error']}")
            found[tx_hash] = (
                None
                if not result
                else Receipt(
                    status=int(result["status"], 16),
                    block_number=int(result["blockNumber"], 16),
                    gas_used=int(result["gasUsed"], 16),
                )
            )
        return found

    def pending_nonce(self, address: str | None = None) -> int:
        who = to_checksum_address(address or self.sender)
        return int(guard(lambda: self.w3.eth.get_transaction_count(who, "pending")))

    def transact(self, name: str, *args: Any, value: int = 0, timeout: float = 60) -> TxReceipt:
        """Estimate, sign, send and wait; a revert raises `RegistryError` naming the error."""
        function = self.function(name, *args)
        signed = self.sign(function, nonce=self.pending_nonce(), fees=self.fees(), value=value)
        self.broadcast(signed.raw)
        try:
            receipt = guard(
                lambda: self.w3.eth.wait_for_transaction_receipt(
                    HexStr(signed.tx_hash), timeout=timeout, poll_latency=0.05
                )
            )
        except TimeExhausted:
            raise RegistryError(f"{name}: no receipt for {signed.tx_hash} in {timeout}s") from None
        if receipt["status"] != 1:
            raise RegistryError(f"{name} reverted in {signed.tx_hash}", reason="reverted")
        return cast(TxReceipt, receipt)

    # --- writes -----------------------------------------------------------------------

    def register(self, role: NodeRole, key_hash: str | bytes) -> TxReceipt:
        return self.transact("register", ROLE_IDS[role], to_bytes32(key_hash))

    def set_association(self, domain: str, associated: bool = True) -> TxReceipt:
        return self.transact("setAssociation", to_checksum_address(domain), associated)

    def create_job(
        self,
        job_key: str,
        spec_hash: str | bytes,
        participants: Iterable[str],
        *,
        deadline: int,
        stake: int = 0,
        bounty: int = 0,
    ) -> TxReceipt:
        return self.transact(
            "createJob",
            job_key_bytes(job_key),
            to_bytes32(spec_hash),
            [to_checksum_address(p) for p in participants],
            stake,
            deadline,
            value=bounty,
        )

    def fund_bounty(self, job_id: str, amount: int) -> TxReceipt:
        return self.transact("fundBounty", to_bytes32(job_id), value=amount)

    def deposit_stake(self, job_id: str, amount: int) -> TxReceipt:
        return self.transact("depositStake", to_bytes32(job_id), value=amount)

    def log_round(
        self, job_id: str, aggregate_hash: str | bytes, counted: int, samples: Sequence[int]
    ) -> TxReceipt:
        return self.transact(
            "logRound", to_bytes32(job_id), to_bytes32(aggregate_hash), counted, list(samples)
        )

    def attest(self, job_id: str, model_hash: str | bytes) -> TxReceipt:
        return self.transact("attest", to_bytes32(job_id), to_bytes32(model_hash))

    def finalize(self, job_id: str, from_block: int = 0) -> TxReceipt:
        rounds = [r.as_argument() for r in self.rounds(job_id, from_block=from_block)]
        return self.transact("finalize", to_bytes32(job_id), rounds)

    def cancel_job(self, job_id: str) -> TxReceipt:
        return self.transact("cancelJob", to_bytes32(job_id))

    def reclaim_bounty(self, job_id: str) -> TxReceipt:
        return self.transact("reclaimBounty", to_bytes32(job_id))

    def withdraw(self) -> TxReceipt:
        return self.transact("withdraw")

    def anchor(self, seq: int, head_hash: str | bytes) -> TxReceipt:
        return self.transact("anchor", seq, to_bytes32(head_hash))

    # --- reads ------------------------------------------------------------------------

    def node(self, address: str) -> NodeRecord:
        who = to_checksum_address(address)
        role, reputation, key_hash = guard(lambda: self.contract.functions.nodes(who).call())
        return NodeRecord(who, ROLE_NAMES[role], hex32(key_hash), int(reputation))

    def job(self, job_id: str) -> JobRecord:
        raw = guard(lambda: self.contract.functions.getJob(to_bytes32(job_id)).call())
        (
            coordinator,
            status,
            stake_required,
            participant_count,
            attestations,
            rounds,
            deadline,
            spec_hash,
            rounds_digest,
            model_hash,
            bounty,
            stake,
            refund_pool,
        ) = raw
        return JobRecord(
            job_id=hex32(to_bytes32(job_id)),
            coordinator=to_checksum_address(coordinator),
            status=JOB_STATUSES[status],
            stake_required=bool(stake_required),
            participant_count=int(participant_count),
            attestations=int(attestations),
            rounds=int(rounds),
            deadline=int(deadline),
            spec_hash=hex32(spec_hash),
            rounds_digest=hex32(rounds_digest),
            model_hash=hex32(model_hash),
            bounty=int(bounty),
            stake=int(stake),
            refund_pool=int(refund_pool),
        )

    def participants(self, job_id: str) -> list[str]:
        found = guard(lambda: self.contract.functions.participantsOf(to_bytes32(job_id)).call())
        return [to_checksum_address(a) for a in found]

    def attestation(self, job_id: str, address: str) -> str:
        value = guard(
            lambda: self.contract.functions.attestations(
                to_bytes32(job_id), to_checksum_address(address)
            ).call()
        )
        return hex32(value)

    def balance(self, address: str) -> int:
        who = to_checksum_address(address)
        return int(guard(lambda: self.contract.functions.balances(who).call()))

    def events(self, name: str, *, from_block: int = 0, **filters: Any) -> list[EventRecord]:
        """Every `name` event matching the indexed-argument filters, oldest first."""
        event = getattr(self.contract.events, name)
        argument_filters = {k: (to_bytes32(v) if k == "jobId" else v) for k, v in filters.items()}
        logs = guard(
            lambda: event.get_logs(argument_filters=argument_filters, from_block=from_block)
        )
        records = [
            EventRecord(
                name=name,
                args={k: _jsonable(v) for k, v in dict(entry["args"]).items()},
                tx_hash="0x" + bytes(entry["transactionHash"]).hex(),
                block_number=int(entry["blockNumber"]),
                log_index=int(entry["logIndex"]),
            )
            for entry in logs
        ]
        return sorted(records, key=lambda r: (r.block_number, r.log_index))

    def rounds(self, job_id: str, *, from_block: int = 0) -> list[RoundRecord]:
        """The job's rounds in order, rebuilt from its `RoundLogged` events."""
        found = [
            RoundRecord(
                round=int(e.args["round"]),
                aggregate_hash=e.args["aggregateHash"],
                counted=int(e.args["counted"]),
                samples=[int(s) for s in e.args["samples"]],
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
            for e in self.events("RoundLogged", from_block=from_block, jobId=job_id)
        ]
        return sorted(found, key=lambda r: r.round)


# A node that prunes history (anvil --prune-history) may resolve "latest" to a block and have
# dropped that block's state by the time it runs the call; the same call a moment later works.
_PRUNED_BLOCK = "BlockOutOfRangeError"
_PRUNED_BLOCK_TRIES = 5


def guard(call: Any) -> Any:
    """Run one RPC call, turning transport failures and contract reverts into our errors."""
    for _ in range(_PRUNED_BLOCK_TRIES - 1):
        try:
            return _guarded(call)
        except RegistryError as exc:
            if _PRUNED_BLOCK not in str(exc):
                raise
    return _guarded(call)


def _guarded(call: Any) -> Any:
    try:
        return call()
    except TRANSPORT_ERRORS as exc:
        # The exception's text would carry the RPC URL, which may hold an API key.
        raise ChainUnavailable(f"chain unreachable ({type(exc).__name__})") from exc
    except ContractLogicError as exc:
        decoded = decode_revert(exc.data if isinstance(exc.data, str) else None)
        if decoded is not None:
            name, args = decoded
            detail = f"({', '.join(map(str, _jsonable(list(args))))})" if args else ""
            raise RegistryError(f"reverted: {name}{detail}", reason=name, args=args) from exc
        raise RegistryError(f"reverted: {exc.message or exc}", reason="reverted") from exc
    except Web3RPCError as exc:
        message = str(exc.message or exc)
        reason = "insufficient_funds" if "insufficient funds" in message.lower() else None
        raise RegistryError(message, reason=reason) from exc


def deploy_registry(
    rpc_url: str, account: LocalAccount, *, timeout: float = 60
) -> tuple[str, TxReceipt]:
    """Deploy the committed GridRegistry artifact; returns its address and the receipt."""
    artifact = registry_artifact()
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor().data_in_transaction
    chain_id = int(guard(lambda: w3.eth.chain_id))
    nonce = int(guard(lambda: w3.eth.get_transaction_count(account.address, "pending")))
    gas = int(guard(lambda: w3.eth.estimate_gas({"from": account.address, "data": data})))
    block = guard(lambda: w3.eth.get_block("latest"))
    priority = int(guard(lambda: w3.eth.max_priority_fee))
    tx = {
        "data": data,
        "gas": int(gas * GAS_MARGIN),
        "nonce": nonce,
        "chainId": chain_id,
        "type": 2,
        "value": 0,
        "maxPriorityFeePerGas": priority,
        "maxFeePerGas": 2 * int(block.get("baseFeePerGas", 0) or 0) + priority,
    }
    signed = account.sign_transaction(tx)
    tx_hash = guard(lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
    receipt = guard(lambda: w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout))
    if receipt["status"] != 1 or not receipt.get("contractAddress"):
        raise RegistryError(f"deployment failed in 0x{bytes(tx_hash).hex()}")
    return to_checksum_address(receipt["contractAddress"]), cast(TxReceipt, receipt)
