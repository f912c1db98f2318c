"""Helpers the domain's blueprints share: lookups that 404, releasing unreferenced blobs."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain.context import blobs
from domain.models import AccessRequest, Dataset
from grid_common.db import db_session
from grid_common.errors import NotFound

T = TypeVar("T")


def get_or_404(model: type[T], ident: Any, what: str) -> T:
    obj = db_session().get(model, ident)
    if obj is None:
        raise NotFound(f"No {what} with id {ident}.")
    return obj


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
