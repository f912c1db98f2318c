"""Datasets: upload private data with public metadata, read metadata and mocks, delete."""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from domain import datasets
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.schemas import DatasetList, DatasetOut, DatasetUpload, MockSample

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")


@route(bp, "", permission=AUTHENTICATED, summary="Datasets on this domain", response=DatasetList)
def list_datasets() -> DatasetList:
    return datasets.list_datasets(db_session())


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
    return datasets.upload_dataset(db_session(), current_user(), body, request.files)


@route(
    bp, "/<name>", permission=AUTHENTICATED, summary="One dataset's metadata", response=DatasetOut
)
def get_dataset(name: str) -> DatasetOut:
    return datasets.get_dataset(db_session(), name)


@route(
    bp,
    "/<name>/mock",
    permission=AUTHENTICATED,
    summary="The dataset's mock sample (never private rows)",
    response=MockSample,
)
def get_mock(name: str) -> MockSample:
    return datasets.read_mock_sample(db_session(), name)


@route(
    bp,
    "/<name>/data",
    permission=Permission.READ_PRIVATE_DATA,
    summary="Download the private data file (owner and admin only)",
    response_kind="binary",
)
def download_data(name: str) -> Response:
    path, download_name = datasets.private_file(db_session(), name)
    return send_file(
        path,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=download_name,
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
    datasets.delete_dataset(db_session(), name)
