"""Amounts of ether as a data scientist or an owner writes them."""

from __future__ import annotations

import pytest

from grid_common.ether import parse_wei


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("0.05 ether", 5 * 10**16),
        ("0.01ether", 10**16),
        ("1 ETH", 10**18),
        ("20 gwei", 2 * 10**10),
        ("1000 wei", 1000),
        (7, 7),
    ],
)
def test_amounts_with_their_unit_become_wei(text: str | int, wei: int) -> None:
    assert parse_wei(text) == wei


@pytest.mark.parametrize("text", ["0.05", "five ether", "-1 ether", "0.5 wei", "1 dollar", -3])
def test_anything_else_is_refused_with_the_form_to_use(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"ether|negative|wei"):
        parse_wei(text)
