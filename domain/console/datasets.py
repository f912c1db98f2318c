"""Datasets in the console: list, upload with progress, metadata with a mock preview, delete."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from domain import datasets, privacy
from domain.auth import current_user
from domain.console.common import bp
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED
from grid_common.console import page, validated
from grid_common.db import db_session
from grid_common.schemas import DatasetUpload, MockSample, PrivacyBudgetIn

PREVIEW_ROWS = 20
_UPLOAD_FIELDS = ("name", "description", "tags", "label", "citation", "license")


@page(bp, "/datasets", permission=AUTHENTICATED, summary="Datasets on this domain")
def datasets_page() -> str:
    return render_template(
        "domain_console/datasets.html", items=datasets.list_datasets(db_session()).items
    )


@page(bp, "/upload", permission=Permission.UPLOAD_DATA, summary="The upload form")
def upload_form() -> str:
    return render_template("domain_console/upload.html")


@page(
    bp,
    "/upload",
    methods=["POST"],
    permission=Permission.UPLOAD_DATA,
    summary="Upload a dataset",
)
def upload() -> Response:
    fields = {k: request.form[k] for k in _UPLOAD_FIELDS if request.form.get(k)}
    uploaded = datasets.upload_dataset(
        db_session(), current_user(), validated(DatasetUpload, fields), request.files
    )
    flash(f"Dataset {uploaded.name} uploaded: {uploaded.dataset_schema.row_count} rows.", "success")
    return redirect(url_for("console.dataset_detail", name=uploaded.name))


def _preview(sample: MockSample) -> dict[str, Any]:
    """Rows of a table mock; for arrays, each array's type and its first rows."""
    if sample.kind == "table":
        names = list(sample.columns)
        count = min((len(v) for v in sample.columns.values()), default=0)
        rows = [[sample.columns[n][i] for n in names] for i in range(min(count, PREVIEW_ROWS))]
        return {"columns": names, "rows": rows, "total": count}
    arrays = []
    for name, values in sample.arrays.items():
        first = values[:PREVIEW_ROWS] if isinstance(values, list) else values
        arrays.append({"name": name, "dtype": sample.dtypes.get(name, ""), "rows": first})
    return {"arrays": arrays}


@page(bp, "/datasets/<name>", permission=AUTHENTICATED, summary="A dataset's public description")
def dataset_detail(name: str) -> str:
    session = db_session()
    dataset = datasets.get_dataset(session, name)
    preview = _preview(datasets.read_mock_sample(session, name)) if dataset.mock.available else None
    return render_template(
        "domain_console/dataset_detail.html",
        dataset=dataset,
        preview=preview,
        budget=privacy.budget_out(session, current_user(), name),
    )


@page(
    bp,
    "/datasets/<name>/delete",
    methods=["POST"],
    permission=Permission.UPLOAD_DATA,
    summary="Delete a dataset",
)
def delete_dataset(name: str) -> Response:
    datasets.delete_dataset(db_session(), name)
    flash(f"Dataset {name} deleted.", "success")
    return redirect(url_for("console.datasets_page"))


@page(
    bp,
    "/datasets/<name>/budget",
    methods=["POST"],
    permission=Permission.EDIT_SETTINGS,
    summary="Set or remove a privacy budget on a dataset",
)
def set_budget(name: str) -> Response:
    epsilon = request.form.get("epsilon", "").strip()
    who = request.form.get("data_scientist", "").strip()
    body = validated(PrivacyBudgetIn, {"epsilon": epsilon or None, "data_scientist": who or None})
    privacy.set_budget(db_session(), name, body)
    flash(f"Privacy budget on {name} saved.", "success")
    return redirect(url_for("console.dataset_detail", name=name))
