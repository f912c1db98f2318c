"""A full disk under the blob store: 507 with a JSON error, and nothing half-written stays.

The live gunicorn domain keeps its blobs on a 4 MiB tmpfs of their own; the test fills it with
a file of its own, then frees it again. Mounting needs root (CI and this suite's machines run
as root); elsewhere the tests are skipped and say why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from safetensors.torch import save_file

import grid_cli as grid
from grid_common.transport import GridError
from tests.worker.live import PLAN, mlp
from worker.domain_api import DomainWorkerApi

DISK_BYTES = 4 << 20
PAGE = 4096


@pytest.fixture
def blob_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted where the live domain (GRID_DATA_DIR=tmp_path/live) keeps blobs."""
    mount = tmp_path / "live" / "blobs"
    mount.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the blob store: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def live_domain_env(blob_disk: Path) -> dict[str, str]:
    """The domain starts only once its blob directory is the small disk (hence `blob_disk`)."""
    return {"GRID_JOB_LEASE_SECONDS": "60"}


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """Take the disk's free space with one file, all but `leave` bytes (whole pages)."""
    filler = disk / "filler"
    with filler.open("ab") as handle:
        handle.write(b"\0" * (free_bytes(disk) - leave))
    assert free_bytes(disk) == leave
    return filler


def blob_files(disk: Path, filler: Path) -> set[Path]:
    """Every file in the blob store, staging area included, but the test's own filler."""
    return {path for path in disk.rglob("*") if path.is_file() and path != filler}


def test_a_dataset_upload_on_a_full_disk_is_refused_with_507_and_leaves_nothing(
    blob_disk: Path, owner: grid.DomainClient, digits_csv: Path
) -> None:
    before = blob_files(blob_disk, blob_disk / "filler")
    filler = fill(blob_disk)

    with pytest.raises(GridError) as refused:
        owner.upload_dataset("digits-b", digits_csv, label="target", progress=False)
    assert (refused.value.status, refused.value.code) == (507, "insufficient_storage")
    assert "disk space" in refused.value.message
    assert [d.name for d in owner.datasets] == ["digits-a"]
    assert blob_files(blob_disk, filler) == before
    ready = requests.get(f"{owner.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["error"]["checks"]["blobs"]["ok"] is False

    filler.unlink()  # the operator frees space: the same upload now goes through
    owner.upload_dataset("digits-b", digits_csv, label="target", progress=False)
    assert [d.name for d in owner.datasets] == ["digits-a", "digits-b"]


def test_a_disk_that_fills_between_two_blobs_of_one_upload_keeps_neither(
    blob_disk: Path, owner: grid.DomainClient, digits_csv: Path, tmp_path: Path
) -> None:
    # A new file (other values than digits-a's) whose data blob fits exactly, so the
    # domain's synthesized mock, written next, finds the disk full.
    other = tmp_path / "other.csv"
    other.write_text(digits_csv.read_text().replace("16.0", "15.0"))
    before = blob_files(blob_disk, blob_disk / "filler")
    filler = fill(blob_disk, leave=-(-other.stat().st_size // PAGE) * PAGE)

    with pytest.raises(GridError) as refused:
        owner.upload_dataset("digits-c", other, label="target", progress=False)
    assert (refused.value.status, refused.value.code) == (507, "insufficient_storage")
    assert [d.name for d in owner.datasets] == ["digits-a"]
    assert blob_files(blob_disk, filler) == before  # the data blob written first is gone too


def test_a_result_upload_on_a_full_disk_is_refused_with_507_and_delivered_once_freed(
    blob_disk: Path,
    live_domain: str,
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    tmp_path: Path,
) -> None:
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=PLAN, reason="digits")
    owner.approve(job.id, reason="fine")
    token = owner.add_worker("w1").token
    assert token is not None
    worker = DomainWorkerApi(live_domain, token)
    leased = worker.lease("test-host")
    assert leased is not None and leased.job_id == job.id
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in mlp().state_dict().items()}, weights)
    metrics = {"loss": 0.5, "accuracy": 0.9}

    before = blob_files(blob_disk, blob_disk / "filler")
    filler = fill(blob_disk)
    with pytest.raises(GridError) as refused:
        worker.deliver_result(job.id, leased.attempt, weights, metrics)
    assert (refused.value.status, refused.value.code) == (507, "insufficient_storage")
    assert blob_files(blob_disk, filler) == before
    assert job.status == "running"  # no result recorded for a blob that was never kept
    auth = {"Authorization": owner.http.session.headers["Authorization"]}
    result = requests.get(f"{live_domain}/api/v1/jobs/{job.id}/result", headers=auth, timeout=30)
    assert (result.status_code, result.json()["error"]["code"]) == (409, "no_result")

    filler.unlink()
    delivered = worker.deliver_result(job.id, leased.attempt, weights, metrics)
    assert delivered.status == "completed"
    owner.release(job.id)
    downloaded = job.download_result(tmp_path / "result.safetensors")
    assert downloaded.read_bytes() == weights.read_bytes()
