"""Helpers the domain tests share for uploading datasets and looking at the blob store."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSV = b"x1,x2,target\n0.5,1.0,0\n1.5,2.0,1\n2.5,3.0,0\n3.5,4.0,1\n"


def upload(
    client: FlaskClient,
    headers: dict[str, str],
    name: str = "digits-a",
    *,
    data: bytes = CSV,
    filename: str = "digits.csv",
    mock: tuple[bytes, str] | None = None,
    **fields: Any,
) -> TestResponse:
    """POST a dataset as the form the API expects; extra keyword arguments are form fields."""
    form: dict[str, Any] = {
        "name": name,
        "label": "target",
        "description": "toy digits",
        "tags": ["digits", "toy"],
        **fields,
    }
    form["file"] = (io.BytesIO(data), filename)
    if mock is not None:
        form["mock"] = (io.BytesIO(mock[0]), mock[1])
    return client.post(
        "/api/v1/datasets", data=form, headers=headers, content_type="multipart/form-data"
    )


def stored_blobs(app: Flask) -> list[Path]:
    root = Path(app.config["GRID"].data_dir) / "blobs"
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def file_job(
    client: FlaskClient,
    headers: dict[str, str],
    model_files: tuple[bytes, bytes],
    plan: dict[str, Any] | str,
    weights: bytes | None = None,
    datasets: tuple[str, ...] = ("digits-a",),
) -> TestResponse:
    """POST a job request: the model archive, its weights and the plan."""
    model, default_weights = model_files
    form = {
        "datasets": list(datasets),
        "reason": "fit a small MLP",
        "plan": plan if isinstance(plan, str) else json.dumps(plan),
        "model": (io.BytesIO(model), "model.pt2"),
        "weights": (io.BytesIO(weights or default_weights), "weights.safetensors"),
    }
    return client.post(
        "/api/v1/requests/jobs", data=form, headers=headers, content_type="multipart/form-data"
    )
