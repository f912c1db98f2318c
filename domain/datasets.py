"""Datasets: uploading private data with its public metadata and a mock, reading the metadata
and the mock, handing out the private file, deleting; each read of data is audited."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Row, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from domain.audit import record
from domain.auth import Principal
from domain.context import blobs, config
from domain.dataset_files import (
    DatasetFileError,
    check_mock_matches,
    detect_format,
    input_shape,
    inspect_dataset,
    read_mock,
    synthesize_mock,
)
from domain.image_archives import METHOD as IMAGE_METHOD
from domain.image_archives import ImageArchive, images_to_npz, is_image_archive
from domain.models import AccessRequest, Dataset
from grid_common.errors import Conflict, NotFound, Unprocessable
from grid_common.schemas import (
    DatasetFormat,
    DatasetList,
    DatasetOut,
    DatasetSchema,
    DatasetUpload,
    MockInfo,
    MockSample,
)

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


def find_dataset(session: Session, name: str) -> Dataset:
    """The dataset named `name`, or NotFound."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"No dataset named {name!r} on this domain.")
    return dataset


def release_blobs(session: Session, digests: set[str]) -> None:
    """Delete blobs no row refers to any more (blobs are shared by content)."""
    for digest in digests:
        in_datasets = select(Dataset.id).where(
            or_(Dataset.data_digest == digest, Dataset.mock_digest == digest)
        )
        in_requests = select(AccessRequest.id).where(
            or_(AccessRequest.model_digest == digest, AccessRequest.weights_digest == digest)
        )
        if session.scalar(in_datasets.limit(1)) is None and (
            session.scalar(in_requests.limit(1)) is None
        ):
            blobs().delete(digest)


def list_datasets(session: Session) -> DatasetList:
    """Every dataset's public description, by name."""
    rows = session.connection().execute(_ALL_DATASETS)
    return DatasetList(items=[dataset_out(row) for row in rows])


def _uploaded(
    files: Mapping[str, FileStorage], field: str, *, required: bool
) -> FileStorage | None:
    file = files.get(field)
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


def _stage_data(
    stack: ExitStack, file: FileStorage, label: str | None
) -> tuple[Path, DatasetFormat, str | None, ImageArchive | None]:
    """The uploaded file staged as stored (an image zip becomes an npz array file), its format,
    its label and, for images, what the archive held."""
    staged = _stage(stack, file)
    if not is_image_archive(file.filename or ""):
        return staged, detect_format(file.filename or ""), label, None
    converted = stack.enter_context(blobs().staging())
    images = images_to_npz(staged, converted, label)
    return converted, "npz", images.label, images


def upload_dataset(
    session: Session, user: Principal, body: DatasetUpload, files: Mapping[str, FileStorage]
) -> DatasetOut:
    """Store the `file` part (and a `mock` part, else a synthesized mock) as a dataset owned
    by `user`; commits. A zip of images is stored as an npz array file (see image_archives)."""
    if session.scalar(select(exists().where(Dataset.name == body.name))):
        raise Conflict(f"A dataset named {body.name!r} already exists.", code="duplicate_name")
    data_file = _uploaded(files, "file", required=True)
    mock_file = _uploaded(files, "mock", required=False)
    assert data_file is not None
    new_blobs: set[str] = set()
    with ExitStack() as stack:
        try:
            data_path, fmt, label, images = _stage_data(stack, data_file, body.label)
            schema = inspect_dataset(data_path, fmt, label)
            schema.input_shape = input_shape(schema, label)
            schema.image_mode = images.mode if images else None
            if mock_file is not None:
                mock_path, mock_fmt, _, _ = _stage_data(stack, mock_file, label)
                check_mock_matches(schema, inspect_dataset(mock_path, mock_fmt, label))
                mock_method = None
            else:
                mock_bytes, mock_fmt, mock_method = synthesize_mock(
                    data_path, schema, config().mock_rows, label=label
                )
                mock_method = IMAGE_METHOD if images else mock_method
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
        label=label,
        schema=schema.model_dump(mode="json"),
        data_digest=data_digest,
        data_size=data_size,
        mock_digest=mock_digest,
        mock_format=mock_fmt,
        mock_synthetic=mock_file is None,
        mock_method=mock_method,
        created_by=user.id,
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


def get_dataset(session: Session, name: str) -> DatasetOut:
    """One dataset's public description."""
    return dataset_out(find_dataset(session, name))


def read_mock_sample(session: Session, name: str) -> MockSample:
    """The dataset's mock sample (never private rows); the read is audited, and commits."""
    dataset = find_dataset(session, name)
    if dataset.mock_digest is None or dataset.mock_format is None:
        raise NotFound(f"Dataset {name!r} has no mock sample.")
    sample = read_mock(
        blobs().path(dataset.mock_digest),
        dataset.mock_format,  # type: ignore[arg-type]
        dataset.mock_synthetic,
    )
    record(session, "datasets.mock_read", name)
    session.commit()
    return sample


def private_file(session: Session, name: str) -> tuple[Path, str]:
    """The private data file's path and its download name; the read is audited, and commits.

    The caller checked that its principal may read private data.
    """
    dataset = find_dataset(session, name)
    record(session, "datasets.private_read", name)
    session.commit()
    return blobs().path(dataset.data_digest), f"{dataset.name}.{dataset.schema['format']}"


def delete_dataset(session: Session, name: str) -> None:
    """Delete a dataset and the blobs nothing else refers to; commits."""
    dataset = find_dataset(session, name)
    digests = {d for d in (dataset.data_digest, dataset.mock_digest) if d}
    session.delete(dataset)
    record(session, "datasets.deleted", name)
    session.commit()
    release_blobs(session, digests)
