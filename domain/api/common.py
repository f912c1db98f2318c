"""Helpers the domain's blueprints share: audit entries for the caller, lookups that 404."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain import audit
from domain.auth import client_address, current_user
from domain.config import DomainConfig
from domain.models import AccessRequest, Dataset
from grid_common.blobstore import BlobStore
from grid_common.db import db_session
from grid_common.errors import NotFound

T = TypeVar("T")


def config() -> DomainConfig:
    cfg: DomainConfig = current_app.config["GRID"]
    return cfg


def blobs() -> BlobStore:
    store: BlobStore = current_app.extensions["blobs"]
    return store


def record(session: Session, action: str, target: str = "", **details: Any) -> None:
    """Audit an action by the signed-in caller, inside the caller's transaction."""
    audit.append(
        session,
        actor=current_user().email,
        action=action,
        target=target,
        address=client_address(),
        details=details,
    )


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
