"""Dataset upload, metadata, mocks, private reads and deletion through the API."""

from __future__ import annotations

from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save as save_safetensors

from tests.domain.uploads import CSV, npz_bytes, parquet_bytes, stored_blobs, upload

IMAGES = np.arange(5 * 8 * 8, dtype=np.float32).reshape(5, 8, 8)
LABELS = np.array([0, 1, 2, 1, 0], dtype=np.int64)


@pytest.mark.parametrize(
    ("filename", "data", "columns"),
    [
        ("d.csv", CSV, {"x1": ("float64", []), "x2": ("float64", []), "target": ("int64", [])}),
        (
            "d.parquet",
            parquet_bytes(pd.DataFrame({"x1": [1.0, 2.0], "target": [0, 1]})),
            {"x1": ("float64", []), "target": ("int64", [])},
        ),
        (
            "d.npz",
            npz_bytes(images=IMAGES, target=LABELS),
            {"images": ("float32", [8, 8]), "target": ("int64", [])},
        ),
        (
            "d.safetensors",
            save_safetensors({"images": IMAGES, "target": LABELS}),
            {"images": ("float32", [8, 8]), "target": ("int64", [])},
        ),
    ],
)
def test_upload_computes_the_schema_for_each_format(
    client, headers, filename, data, columns
) -> None:
    response = upload(client, headers["owner"], data=data, filename=filename)
    assert response.status_code == 201, response.json
    schema = response.json["schema"]
    assert {c["name"]: (c["dtype"], c["shape"]) for c in schema["columns"]} == columns
    assert schema["row_count"] == (
        2 if filename.endswith("parquet") else 4 if filename.endswith("csv") else 5
    )
    assert response.json["mock"] == {
        "available": True,
        "synthetic": True,
        "method": response.json["mock"]["method"],
    }
    assert response.json["mock"]["method"]


def test_metadata_and_synthetic_mock_are_readable_by_every_account(client, headers) -> None:
    upload(client, headers["owner"])
    listed = client.get("/api/v1/datasets", headers=headers["data_scientist"]).json["items"]
    assert [(d["name"], d["tags"], d["label"]) for d in listed] == [
        ("digits-a", ["digits", "toy"], "target")
    ]
    mock = client.get("/api/v1/datasets/digits-a/mock", headers=headers["data_scientist"])
    assert mock.status_code == 200
    assert mock.json["kind"] == "table" and mock.json["synthetic"] is True
    assert set(mock.json["columns"]) == {"x1", "x2", "target"}
    assert set(mock.json["columns"]["target"]) <= {0, 1}


def test_owner_supplied_mock_is_served_as_is(client, headers) -> None:
    mock = b"x1,x2,target\n9.0,9.0,1\n"
    response = upload(client, headers["owner"], mock=(mock, "mock.csv"))
    assert response.json["mock"]["synthetic"] is False
    served = client.get("/api/v1/datasets/digits-a/mock", headers=headers["data_scientist"]).json
    assert served["columns"] == {"x1": [9.0], "x2": [9.0], "target": [1]}


def test_private_data_only_for_owner_and_admin_and_every_read_audited(client, headers) -> None:
    upload(client, headers["owner"])
    for role in ("data_scientist", "compliance_officer"):
        assert (
            client.get("/api/v1/datasets/digits-a/data", headers=headers[role]).status_code == 403
        )
    for role in ("owner", "admin"):
        response = client.get("/api/v1/datasets/digits-a/data", headers=headers[role])
        assert response.status_code == 200 and response.data == CSV
    reads = client.get("/api/v1/audit?action=datasets.private_read", headers=headers["owner"]).json[
        "items"
    ]
    assert [e["actor"] for e in reads] == ["owner@example.org", "admin@example.org"]


@pytest.mark.parametrize(
    ("data", "filename", "fields", "needle"),
    [
        (b"x1,x2,target\n1,2,0\n1,2\n", "d.csv", {}, "line 3"),
        (b"x1,x2,target\n1,2,0\n1,2,0,7\n", "d.csv", {}, "line 3"),
        (CSV, "d.csv", {"label": "y"}, "'y'"),
        (b"not a parquet file", "d.parquet", {}, "parquet"),
        (CSV, "d.xlsx", {}, ".csv"),
        (npz_bytes(a=np.zeros((3, 2)), b=np.zeros(4)), "d.npz", {"label": "a"}, "first dimension"),
    ],
)
def test_bad_files_are_422_and_leave_nothing_behind(
    app, client, headers, data, filename, fields, needle
) -> None:
    response = upload(client, headers["owner"], data=data, filename=filename, **fields)
    assert response.status_code == 422, response.json
    assert needle in response.json["error"]["message"]
    assert client.get("/api/v1/datasets", headers=headers["owner"]).json["items"] == []
    assert stored_blobs(app) == []
    assert list((Path(app.config["GRID"].data_dir) / "blobs" / "tmp").iterdir()) == []


def test_mismatched_owner_mock_is_422_and_leaves_nothing(app, client, headers) -> None:
    response = upload(client, headers["owner"], mock=(b"x1,other,target\n1,2,0\n", "mock.csv"))
    assert response.status_code == 422
    assert "x2" in response.json["error"]["message"]
    assert stored_blobs(app) == []


def test_upload_over_the_limit_is_413_and_leaves_nothing(app, client, headers) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = upload(client, headers["owner"], data=CSV + b"1.0,2.0,1\n" * 200)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert stored_blobs(app) == []


def test_duplicate_name_is_409(client, headers) -> None:
    assert upload(client, headers["owner"]).status_code == 201
    response = upload(client, headers["owner"])
    assert response.status_code == 409
    assert response.json["error"]["code"] == "duplicate_name"


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a b", "", "x" * 101])
def test_bad_dataset_names_are_422(client, headers, name) -> None:
    response = upload(client, headers["owner"], name=name)
    assert response.status_code == 422
    assert "name" in response.json["error"]["message"]


def test_path_like_file_names_never_reach_the_filesystem(app, client, headers, tmp_path) -> None:
    response = upload(client, headers["owner"], filename="../../../../escaped.csv")
    assert response.status_code == 201
    data_dir = Path(app.config["GRID"].data_dir)
    assert not any(p.name == "escaped.csv" for p in tmp_path.rglob("*"))
    assert all(p.resolve().is_relative_to(data_dir.resolve()) for p in stored_blobs(app))


def test_delete_removes_the_row_and_unshared_blobs(app, client, headers) -> None:
    upload(client, headers["owner"], "first")
    upload(client, headers["owner"], "second")  # same bytes: the data blob is shared
    data_blob = Path(app.config["GRID"].data_dir) / "blobs" / sha256(CSV).hexdigest()[:2]
    data_blob /= sha256(CSV).hexdigest()
    blobs_before = stored_blobs(app)
    assert client.delete("/api/v1/datasets/first", headers=headers["owner"]).status_code == 204
    # Only the first's mock (each synthetic mock is drawn afresh) is gone; the data stays.
    assert data_blob in stored_blobs(app)
    assert len(stored_blobs(app)) == len(blobs_before) - 1
    assert client.delete("/api/v1/datasets/second", headers=headers["admin"]).status_code == 204
    assert stored_blobs(app) == []
    assert client.get("/api/v1/datasets/second", headers=headers["owner"]).status_code == 404


def test_missing_file_part_is_422(client, headers) -> None:
    response = client.post(
        "/api/v1/datasets",
        data={"name": "x"},
        headers=headers["owner"],
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "'file'" in response.json["error"]["message"]
