"""Image datasets through the API: a zip of PNG/JPEG files and labels.csv stored as an array,
a mock of synthetic images only, and hostile archives refused with nothing left behind."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from domain import image_archives
from domain.image_archives import images_to_npz
from grid_common.datafiles import DatasetFileError
from tests.domain.image_zips import (
    digits_images,
    digits_zip,
    huge_png,
    image_members,
    labels_csv,
    png,
    zip_bytes,
)
from tests.domain.uploads import stored_blobs, upload

DS = "data_scientist"
# The archive checks run before the database sees anything: one database is enough.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _refused(app, client, headers, data: bytes, needle: str, label: str = "label") -> None:
    response = upload(client, headers["owner"], data=data, filename="d.zip", label=label)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid_dataset"
    assert needle in response.json["error"]["message"], response.json["error"]["message"]
    assert client.get("/api/v1/datasets", headers=headers["owner"]).json["items"] == []
    assert stored_blobs(app) == []
    assert list((Path(app.config["GRID"].data_dir) / "blobs" / "tmp").iterdir()) == []


@SQLITE
def test_a_zip_of_images_is_stored_as_one_uint8_array_described_by_its_shape(
    client, headers
) -> None:
    images, labels = digits_images(40)
    # No label field: the label column is labels.csv's second column.
    form = {"name": "digits-a", "file": (io.BytesIO(digits_zip(40)), "digits.zip")}
    response = client.post(
        "/api/v1/datasets", data=form, headers=headers["owner"], content_type="multipart/form-data"
    )
    assert response.status_code == 201, response.json
    body = response.json
    schema = body["schema"]
    assert (body["format"], body["label"], schema["image_mode"]) == ("npz", "label", "L")
    assert {c["name"]: (c["dtype"], c["shape"]) for c in schema["columns"]} == {
        "image": ("uint8", [1, 8, 8]),
        "label": ("int64", []),
    }
    assert (schema["row_count"], schema["input_shape"]) == (40, [1, 8, 8])
    assert schema["label_classes"] == sorted(set(labels.tolist()))
    private = client.get("/api/v1/datasets/digits-a/data", headers=headers["owner"])
    stored = np.load(io.BytesIO(private.data))
    assert np.array_equal(stored["image"][:, 0], images)  # the owner's pixels, exactly
    assert np.array_equal(stored["label"], labels)


@SQLITE
def test_colour_jpegs_keep_their_channels_first(client, headers) -> None:
    rng = np.random.default_rng(0)
    members = {f"{i}.jpg": png(rng.integers(0, 255, (6, 10, 3)), "JPEG") for i in range(3)}
    members["labels.csv"] = labels_csv(list(members), [0, 1, 0])
    response = upload(
        client, headers["owner"], data=zip_bytes(members), filename="d.zip", label="label"
    )
    assert response.status_code == 201, response.json
    assert response.json["schema"]["input_shape"] == [3, 6, 10]
    assert response.json["schema"]["image_mode"] == "RGB"


@SQLITE
def test_the_mock_is_synthetic_images_unlike_any_owner_image(client, headers) -> None:
    """The attack: read the mock as a data scientist and look for the owner's images in it."""
    digits, labels = digits_images(100)
    owner = np.kron(digits, np.ones((3, 3), dtype=np.uint8))  # 24x24: correlations are tight
    data = zip_bytes(image_members(owner, labels))
    assert (
        upload(client, headers["owner"], data=data, filename="d.zip", label="label").status_code
        == 201
    )
    assert (
        upload(
            client, headers["owner"], "again", data=data, filename="d.zip", label="label"
        ).status_code
        == 201
    )
    info = client.get("/api/v1/datasets/digits-a", headers=headers[DS]).json
    assert "synthetic images" in info["mock"]["method"]
    mocks = [
        client.get(f"/api/v1/datasets/{name}/mock", headers=headers[DS]).json
        for name in ("digits-a", "again")
    ]
    assert mocks[0]["dtypes"] == {"image": "uint8", "label": "int64"}
    mock = np.asarray(mocks[0]["arrays"]["image"], dtype=np.float64)
    assert mock.shape == (100, 1, 24, 24)
    flat_mock = mock.reshape(100, -1)
    flat_owner = owner.reshape(100, -1).astype(np.float64)
    assert not any((flat_owner == row).all(axis=1).any() for row in flat_mock)
    correlation = np.corrcoef(flat_mock, flat_owner)[:100, 100:]
    assert np.abs(correlation).max() < 0.5, np.abs(correlation).max()
    # Drawn from the domain's own entropy: the same upload never gives the same mock.
    assert mocks[0]["arrays"]["image"] != mocks[1]["arrays"]["image"]


def _symlinked() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in image_members(*digits_images(2)).items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("img/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


_TWO = image_members(*digits_images(2))
_LISTED = ["img/00000.png", "img/00001.png"]


def _replacing(name: str, data: bytes) -> bytes:
    return zip_bytes({**_TWO, name: data})


_HOSTILE = {
    "not-a-zip": (b"not a zip", "not a valid zip file"),
    "traversal": (_replacing("../evil.png", b"x"), "'../evil.png' has an unsafe path"),
    "absolute": (_replacing("/etc/x.png", b"x"), "'/etc/x.png' has an unsafe path"),
    "backslash": (_replacing("a\\..\\b.png", b"x"), "unsafe path"),
    "symlink": (_symlinked(), "symbolic link"),
    "non-image": (_replacing("notes.txt", b"hi"), "'notes.txt' is neither a PNG/JPEG"),
    "fake-png": (_replacing(_LISTED[1], b"#!/bin/sh\n"), "'img/00001.png' is not a PNG or JPEG"),
    "no-labels": (zip_bytes({k: v for k, v in _TWO.items() if k != "labels.csv"}), "no labels"),
    "unknown-file": (
        _replacing("labels.csv", labels_csv([*_LISTED, "img/x.png"], [0, 1, 2])),
        "'img/x.png', which is not an image",
    ),
    "unlisted": (
        _replacing("labels.csv", labels_csv(_LISTED[:1], [0])),
        "'img/00001.png' is not listed",
    ),
    "text-label": (_replacing("labels.csv", labels_csv(_LISTED, [0, "cat"])), "label 'cat'"),
    "size": (
        _replacing(_LISTED[1], png(np.zeros((9, 8)))),
        "'img/00001.png' is 8x9 L, but 'img/00000.png' is 8x8 L",
    ),
    "mode": (_replacing(_LISTED[1], png(np.zeros((8, 8, 3)))), "'img/00001.png' is 8x8 RGB"),
    "pixel-bomb": (_replacing(_LISTED[0], huge_png(5000, 5000)), "'img/00000.png' is 5000x5000"),
}


@pytest.mark.parametrize("case", list(_HOSTILE))
def test_hostile_archives_are_refused_naming_the_member(tmp_path: Path, case: str) -> None:
    data, needle = _HOSTILE[case]
    (tmp_path / "d.zip").write_bytes(data)
    with pytest.raises(DatasetFileError) as refused:
        images_to_npz(tmp_path / "d.zip", tmp_path / "out.npz", "label")
    assert needle in str(refused.value)


@SQLITE
def test_a_refused_archive_leaves_nothing_behind(app, client, headers) -> None:
    _refused(app, client, headers, _HOSTILE["traversal"][0], "unsafe path")
    _refused(app, client, headers, digits_zip(3), "not the label column", label="target")


@SQLITE
def test_zip_bombs_stop_at_the_unpacked_and_decoded_limits(
    app, client, headers, monkeypatch
) -> None:
    monkeypatch.setattr(image_archives, "MAX_MEMBERS", 2)
    _refused(app, client, headers, digits_zip(2), "at most 2 are accepted")
    monkeypatch.setattr(image_archives, "MAX_MEMBERS", 100)
    monkeypatch.setattr(image_archives, "MAX_UNPACKED_BYTES", 20_000)
    # Deflate packs 50 kB of zeros into a few dozen bytes; the declared size is what counts.
    _refused(app, client, headers, _replacing("img/big.png", bytes(50_000)), "unpacks to more")
    monkeypatch.setattr(image_archives, "MAX_LABELS_BYTES", 10)
    _refused(app, client, headers, digits_zip(2), "labels.csv unpacks to 43 bytes; at most 10")
    monkeypatch.setattr(image_archives, "MAX_LABELS_BYTES", 1000)
    blank = image_members(np.zeros((8, 64, 64), dtype=np.uint8), np.zeros(8, dtype=int))
    assert sum(len(v) for v in blank.values()) < 20_000 < 8 * 64 * 64
    _refused(app, client, headers, zip_bytes(blank), "decode to more than 20,000 bytes")
