"""Amounts of ether as people write them ("0.05 ether", "0.01ether", "20 gwei", "1000 wei")."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

WEI_PER = {"ether": 10**18, "eth": 10**18, "gwei": 10**9, "wei": 1}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*$")


def parse_wei(amount: str | int) -> int:
    """Wei from an amount with its unit (ether, eth, gwei, wei), or from an int of wei.

    Raises ValueError naming the accepted form for anything else (a negative amount, no unit,
    a fraction of a wei)."""
    if isinstance(amount, int) and not isinstance(amount, bool):
        if amount < 0:
            raise ValueError("an amount cannot be negative")
        return amount
    found = _AMOUNT.match(str(amount))
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in WEI_PER:
        raise ValueError(
            f"not an amount of ether: {amount!r}; write it with its unit, e.g. '0.05 ether', "
            "'20 gwei' or '1000 wei'"
        )
    try:
        wei = Decimal(found.group(1)) * WEI_PER[unit]
    except InvalidOperation:
        raise ValueError(f"not an amount of ether: {amount!r}") from None
    if wei != wei.to_integral_value():
        raise ValueError(f"{amount!r} is not a whole number of wei")
    return int(wei)
