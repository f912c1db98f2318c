"""The Python client against a live domain: the owner and data scientist flow, errors, tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch import nn

import grid_cli as grid
from domain.security import issue_access_token
from tests.conftest import NODE_NAME, OWNER_EMAIL, OWNER_PASSWORD

DS_EMAIL = "ds@example.org"
DS_PASSWORD = "ds-password-123"


def test_owner_and_data_scientist_flow(
    live_domain: str, owner: grid.DomainClient, digits_csv: Path, arrays_npz: Path
) -> None:
    uploaded = owner.upload_dataset(
        "digits-a",
        digits_csv,
        label="target",
        description="Handwritten digit features",
        tags=["digits", "tabular"],
        license="CC-BY-4.0",
        progress=False,
    )
    assert uploaded.name == "digits-a"
    assert uploaded.label == "target"
    assert uploaded.row_count == 30
    owner.upload_dataset("images", arrays_npz, label="y", tags=["images"], progress=False)

    account = owner.create_user(DS_EMAIL, DS_PASSWORD, role="data_scientist")
    assert account.role == "data_scientist"
    assert DS_EMAIL in [u.email for u in owner.users]

    ds = grid.login(live_domain, DS_EMAIL, DS_PASSWORD)
    assert ds.me.email == DS_EMAIL
    datasets = ds.datasets
    assert len(datasets) == 2
    assert [d.name for d in datasets] == ["digits-a", "images"]
    assert "digits-a" in datasets
    digits = datasets["digits-a"]
    assert digits.description == "Handwritten digit features"
    assert digits.tags == ["digits", "tabular"]
    assert [c.name for c in digits.schema.columns] == ["f0", "f1", "f2", "target"]
    table = digits.mock
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["f0", "f1", "f2", "target"]
    assert len(table) == 30
    assert table["f0"].dtype == np.int64
    arrays = ds.datasets["images"].mock
    assert isinstance(arrays, dict)
    assert arrays["x"].shape == (20, 4, 4)
    assert arrays["x"].dtype == np.float32
    assert arrays["y"].dtype == np.int64
    with pytest.raises(KeyError, match="available: digits-a, images"):
        datasets["nope"]

    # Approve path: the owner sees the request pending; the data scientist sees the decision.
    model, plan = nn.Sequential(nn.Linear(3, 3)), {"loss": "cross_entropy"}
    asked = ds.request(
        ds.submit_training(model, "digits-a", plan, reason="Train a digit classifier").id
    )
    assert (asked.status, asked.reason, asked.request_reason) == (
        "pending",
        None,
        "Train a digit classifier",
    )
    assert [r.id for r in owner.requests.pending] == [asked.id]
    approved = owner.approve(asked.id, reason="Fine for research")
    assert approved.status == "approved"
    assert asked.refresh() is asked
    assert (asked.status, asked.reason, asked.decided_by) == (
        "approved",
        "Fine for research",
        OWNER_EMAIL,
    )

    # Deny path, asking for several datasets at once.
    second = ds.request(
        ds.submit_training(model, ["digits-a", "images"], plan, reason="Both, please").id
    )
    assert sorted(second.datasets) == ["digits-a", "images"]
    assert owner.requests.pending.ids == [second.id]
    owner.deny(second, reason="Images are not shareable")
    assert ds.request(second.id).reason == "Images are not shareable"
    assert second.refresh().status == "denied"
    assert len(owner.requests.pending) == 0
    assert [r.status for r in ds.requests] == ["approved", "denied"]

    # The server's messages come through GridError with status and code.
    with pytest.raises(grid.GridError, match="already approved") as already:
        owner.deny(asked.id, reason="changed my mind")
    assert (already.value.status, already.value.code) == (409, "already_decided")
    with pytest.raises(grid.GridError, match="lacks the") as forbidden:
        ds.approve(second.id)
    assert forbidden.value.status == 403
    with pytest.raises(grid.GridError, match="No dataset named 'missing'") as missing:
        ds.submit_training(model, "missing", plan, reason="?")
    assert missing.value.status == 404

    # An API key acts as its account.
    key = ds.create_api_key("notebook")
    assert key.key is not None
    scripted = grid.connect(live_domain, api_key=key.key)
    assert scripted.me.email == DS_EMAIL
    assert len(scripted.requests) == 2

    owner.delete_dataset("images")
    assert owner.datasets.names == ["digits-a"]
    report = owner.verify_audit()
    assert report.ok, report.problem
    assert report.entries > 0
    assert "requests.approved" in [e.action for e in owner.audit_log(action="requests.")]


def test_errors_carry_the_server_message(
    live_domain: str,
    owner: grid.DomainClient,
    tmp_path: Path,
    digits_csv: Path,
    ragged_csv: Path,
) -> None:
    with pytest.raises(grid.GridError, match="Wrong email or password") as wrong:
        grid.login(live_domain, OWNER_EMAIL, "not-the-password")
    assert (wrong.value.status, wrong.value.code) == (401, "bad_credentials")

    owner.upload_dataset("digits-a", digits_csv, label="target", progress=False)
    with pytest.raises(grid.GridError, match="'digits-a' already exists") as duplicate:
        owner.upload_dataset("digits-a", digits_csv, progress=False)
    assert (duplicate.value.status, duplicate.value.code) == (409, "duplicate_name")

    with pytest.raises(grid.GridError, match="line 3 has 2 fields") as ragged:
        owner.upload_dataset("ragged", ragged_csv, progress=False)
    assert (ragged.value.status, ragged.value.code) == (422, "invalid_dataset")
    other_csv = tmp_path / "other.csv"
    other_csv.write_text("x,y\n1,2\n")
    with pytest.raises(grid.GridError, match="the mock has no column 'f0'") as mismatch:
        owner.upload_dataset("digits-b", digits_csv, mock=other_csv, progress=False)
    assert mismatch.value.status == 422

    # An owner's own mock is served as uploaded.
    mock_csv = tmp_path / "mock.csv"
    mock_csv.write_text("f0,f1,f2,target\n1,2,0.5,0\n3,4,1.5,1\n")
    own = owner.upload_dataset("digits-b", digits_csv, mock=mock_csv, progress=False)
    assert own.info.mock.synthetic is False
    own_mock = own.mock
    assert isinstance(own_mock, pd.DataFrame)
    assert own_mock.to_dict("list") == {
        "f0": [1, 3],
        "f1": [2, 4],
        "f2": [0.5, 1.5],
        "target": [0, 1],
    }
    assert owner.datasets.names == ["digits-a", "digits-b"]

    with pytest.raises(grid.GridError, match="password") as short:
        owner.create_user("short@example.org", "short")
    assert short.value.status == 422

    with pytest.raises(grid.GridError, match="API key is unknown or revoked"):
        grid.connect(live_domain, api_key="grid_not-a-real-key")
    with pytest.raises(ValueError, match="needs api_key"):
        grid.connect(live_domain)


def test_expired_access_token_is_refreshed_once(
    live_domain: str, owner: grid.DomainClient, tmp_path: Path, digits_csv: Path
) -> None:
    # The live node keeps its signing key in its data dir; sign a token that expired a minute ago.
    secret = (tmp_path / "live" / "secret_key").read_text().strip()
    user_id = owner.me.id
    expired = issue_access_token(secret, user_id=user_id, role="owner", ttl_s=-60, issuer=NODE_NAME)

    without_refresh = grid.DomainClient(live_domain, access_token=expired)
    with pytest.raises(grid.GridError, match="Access token expired") as stale:
        _ = without_refresh.me
    assert stale.value.code == "token_expired"

    rotated: list[str] = []
    client = grid.DomainClient(
        live_domain,
        access_token=expired,
        refresh_token=owner.refresh_token,
        on_tokens=lambda pair: rotated.append(pair.refresh_token),
    )
    assert client.me.email == OWNER_EMAIL
    assert len(rotated) == 1
    assert client.access_token != expired
    assert client.refresh_token == rotated[0] != owner.refresh_token

    # Streaming uploads refresh ahead of time instead of after a 401.
    client.http.set_bearer(expired)
    client._access_token = expired
    dataset = client.upload_dataset("digits-a", digits_csv, label="target", progress=False)
    assert dataset.row_count == 30
    assert len(rotated) == 2

    # Signing in again still works, and so does a client made from a refresh token alone.
    again = grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    assert grid.connect(live_domain, refresh_token=again.refresh_token).me.role == "owner"

    # Logging out with an expired access token revokes the refresh token it rotated to.
    session = grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    handed_out: list[str] = []
    ending = grid.DomainClient(
        live_domain,
        access_token=expired,
        refresh_token=session.refresh_token,
        on_tokens=lambda pair: handed_out.append(pair.refresh_token),
    )
    ending.logout()
    assert ending.refresh_token is None and len(handed_out) == 1
    with pytest.raises(grid.GridError, match="already used") as revoked:
        grid.connect(live_domain, refresh_token=handed_out[0])
    assert revoked.value.status == 401
