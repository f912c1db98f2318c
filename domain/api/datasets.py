"""Datasets: upload private data with public metadata, read metadata and mocks, delete."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request, send_file
from sqlalchemy import Row, exists, select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from domain.api.common import release_blobs
from domain.audit import record
from domain.auth import current_user
from domain.context import blobs, config
from domain.dataset_files import (
    DatasetFileError,
    check_mock_matches,
    detect_format,
    inspect_dataset,
    read_mock,
    synthesize_mock,
)
from domain.models import Dataset
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import Conflict, NotFound, Unprocessable
from grid_common.schemas import (
    DatasetList,
    DatasetOut,
    DatasetSchema,
    DatasetUpload,
    MockInfo,
    MockSample,
)

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")

_ALL_DATASETS = select(Dataset.__table__).order_by(Dataset.__table__.c.name)


def dataset_out(dataset: Dataset | Row[Any]) -> DatasetOut:
    """The public description of a dataset, from a model instance or a Core row."""
    schema = DatasetSchema.model_validate(dataset.schema)
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        tags=dataset.tags,
        citation=dataset.citation,
        license=dataset.license,
        label=dataset.label,
        format=schema.format,
        schema=schema,
        size_bytes=dataset.data_size,
        mock=MockInfo(
            available=dataset.mock_digest is not None,
            synthetic=dataset.mock_synthetic,
            method=dataset.mock_method,
        ),
        created_at=dataset.created_at,
    )


def find_dataset(name: str) -> Dataset:
    dataset = db_session().scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"No dataset named {name!r} on this domain.")
    return dataset


def _uploaded(field: str, *, required: bool) -> FileStorage | None:
    file = request.files.get(field)
    if file is None or not file.filename:
        if required:
            raise Unprocessable(f"Missing the '{field}' file part of the upload.")
        return None
    return file


def _stage(stack: ExitStack, file: FileStorage) -> Path:
    # The client's file name only picks the format; it never becomes a path here.
    staged = stack.enter_context(blobs().staging())
    file.save(staged)
    return staged


@route(bp, "", permission=AUTHENTICATED, summary="Datasets on this domain", response=DatasetList)
def list_datasets() -> DatasetList:
    rows = db_session().connection().execute(_ALL_DATASETS)
    return DatasetList(items=[dataset_out(row) for row in rows])


@route(
    bp,
    "",
    methods=["POST"],
    permission=Permission.UPLOAD_DATA,
    summary="Upload a dataset (CSV, Parquet, .npz or safetensors) with an optional mock",
    body=DatasetUpload,
    body_kind="multipart",
    files=("file", "mock"),
    response=DatasetOut,
    status=201,
)
def upload_dataset(body: DatasetUpload) -> DatasetOut:
    session = db_session()
    if session.scalar(select(exists().where(Dataset.name == body.name))):
        raise Conflict(f"A dataset named {body.name!r} already exists.", code="duplicate_name")
    data_file = _uploaded("file", required=True)
    mock_file = _uploaded("mock", required=False)
    assert data_file is not None
    new_blobs: set[str] = set()
    with ExitStack() as stack:
        try:
            fmt = detect_format(data_file.filename or "")
            data_path = _stage(stack, data_file)
            schema = inspect_dataset(data_path, fmt, body.label)
            if mock_file is not None:
                mock_fmt = detect_format(mock_file.filename or "")
                mock_path = _stage(stack, mock_file)
                check_mock_matches(schema, inspect_dataset(mock_path, mock_fmt, body.label))
                mock_method = None
            else:
                mock_bytes, mock_fmt, mock_method = synthesize_mock(
                    data_path, schema, config().mock_rows, label=body.label
                )
        except DatasetFileError as exc:
            raise Unprocessable(str(exc), code="invalid_dataset") from None

        try:
            data_digest, data_size, created = blobs().commit(data_path)
            if created:
                new_blobs.add(data_digest)
            if mock_file is not None:
                mock_digest, _, created = blobs().commit(mock_path)
            else:
                mock_digest, _, created = blobs().put_bytes(mock_bytes)
            if created:
                new_blobs.add(mock_digest)
        except OSError:
            # The disk filled up (or failed) between the two blobs: keep neither.
            release_blobs(session, new_blobs)
            raise

    dataset = Dataset(
        name=body.name,
        description=body.description,
        tags=body.tags,
        citation=body.citation,
        license=body.license,
        label=body.label,
        schema=schema.model_dump(mode="json"),
        data_digest=data_digest,
        data_size=data_size,
        mock_digest=mock_digest,
        mock_format=mock_fmt,
        mock_synthetic=mock_file is None,
        mock_method=mock_method,
        created_by=current_user().id,
    )
    try:
        session.add(dataset)
        record(session, "datasets.uploaded", body.name, rows=schema.row_count, digest=data_digest)
        session.commit()
    except IntegrityError:
        session.rollback()
        release_blobs(session, new_blobs)
        raise Conflict(
            f"A dataset named {body.name!r} already exists.", code="duplicate_name"
        ) from None
    return dataset_out(dataset)


@route(
    bp, "/<name>", permission=AUTHENTICATED, summary="One dataset's metadata", response=DatasetOut
)
def get_dataset(name: str) -> DatasetOut:
    return dataset_out(find_dataset(name))


@route(
    bp,
    "/<name>/mock",
    permission=AUTHENTICATED,
    summary="The dataset's mock sample (never private rows)",
    response=MockSample,
)
def get_mock(name: str) -> MockSample:
    dataset = find_dataset(name)
    if dataset.mock_digest is None or dataset.mock_format is None:
        raise NotFound(f"Dataset {name!r} has no mock sample.")
    sample = read_mock(
        blobs().path(dataset.mock_digest),
        dataset.mock_format,  # type: ignore[arg-type]
        dataset.mock_synthetic,
    )
    session = db_session()
    record(session, "datasets.mock_read", name)
    session.commit()
    return sample


@route(
    bp,
    "/<name>/data",
    permission=Permission.READ_PRIVATE_DATA,
    summary="Download the private data file (owner and admin only)",
    response_kind="binary",
)
def download_data(name: str) -> Response:
    dataset = find_dataset(name)
    session = db_session()
    record(session, "datasets.private_read", name)
    session.commit()
    return send_file(
        blobs().path(dataset.data_digest),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"{dataset.name}.{dataset.schema['format']}",
    )


@route(
    bp,
    "/<name>",
    methods=["DELETE"],
    permission=Permission.UPLOAD_DATA,
    summary="Delete a dataset and its blobs",
    status=204,
)
def delete_dataset(name: str) -> None:
    session = db_session()
    dataset = find_dataset(name)
    digests = {d for d in (dataset.data_digest, dataset.mock_digest) if d}
    session.delete(dataset)
    record(session, "datasets.deleted", name)
    session.commit()
    release_blobs(session, digests)
