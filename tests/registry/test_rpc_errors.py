"""How the registry client turns a node's RPC errors into its own, and which it tries again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3.exceptions import Web3RPCError

from registry.client import guard
from registry.errors import RegistryError

PRUNED = {"code": -32602, "message": "BlockOutOfRangeError: block height is 148 but requested 147"}
OTHER = {"code": -32000, "message": "execution aborted (timeout = 5s)"}


def failing(times: int, error: dict[str, object]) -> tuple[Callable[[], str], list[int]]:
    """A call that raises `error` as the node would, `times` times, then answers."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise Web3RPCError(str(error))
        return "answer"

    return call, calls


def test_a_call_that_meets_a_block_the_node_just_pruned_is_tried_again() -> None:
    call, calls = failing(2, PRUNED)
    assert guard(call) == "answer"
    assert len(calls) == 3


def test_a_block_that_stays_out_of_range_is_reported_after_a_few_tries() -> None:
    call, calls = failing(100, PRUNED)
    with pytest.raises(RegistryError, match="BlockOutOfRangeError"):
        guard(call)
    assert 1 < len(calls) < 10


def test_other_rpc_errors_are_reported_at_once() -> None:
    call, calls = failing(1, OTHER)
    with pytest.raises(RegistryError, match="execution aborted"):
        guard(call)
    assert len(calls) == 1
