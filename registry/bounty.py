"""A data scientist escrows a bounty on a network's chain job, from their own key.

The key is the data scientist's: a key file they keep (0600) or `GRID_ETH_PRIVATE_KEY`; no
node ever holds it. The bounty is paid out at finalize to the domains that attested the
agreed model, by contribution (samples times rounds counted); if the job fails or is
cancelled the funder reclaims it (`reclaimBounty`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.keys import KEY_ENV


def scientist_account(key_file: Path | str | None = None) -> LocalAccount:
    """The data scientist's key: `key_file` (owner-only permissions) else
    `GRID_ETH_PRIVATE_KEY`; a clear error naming both when neither is there."""
    if key_file is not None:
        path = Path(key_file)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        return Account.from_key(path.read_text().strip())
    if os.environ.get(KEY_ENV):
        return Account.from_key(os.environ[KEY_ENV].strip())
    raise ValueError(f"a bounty is paid from your own key: pass key_file= or set {KEY_ENV}")


def fund_when_open(
    client: RegistryClient, job_id: str, amount_wei: int, *, timeout_s: float = 120
) -> str:
    """Wait until the job is on chain (its coordinator's createJob mined), then escrow
    `amount_wei` on it; returns the transaction hash. A job already settled refuses it."""
    if amount_wei <= 0:
        raise ValueError("a bounty must be more than 0 wei")
    deadline = time.monotonic() + timeout_s
    while not client.job(job_id).exists:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is not on chain after {timeout_s:.0f} s")
        time.sleep(0.5)
    receipt = client.fund_bounty(job_id, amount_wei)
    if receipt["status"] != 1:
        raise RegistryError(f"fundBounty reverted for job {job_id}")
    return "0x" + bytes(receipt["transactionHash"]).hex()
