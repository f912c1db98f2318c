"""Long-lived API keys for scripts: listing, creating and revoking the caller's own keys."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.audit import record
from domain.auth import Principal
from domain.models import ApiKey
from domain.security import new_api_key, token_digest
from grid_common.errors import NotFound
from grid_common.schemas import ApiKeyCreate, ApiKeyList, ApiKeyOut


def _out(key: ApiKey, secret: str | None = None) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked=key.revoked_at is not None,
        key=secret,
    )


def list_keys(session: Session, user: Principal) -> ApiKeyList:
    """`user`'s API keys, revoked ones included; never another account's."""
    keys = session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id))
    return ApiKeyList(items=[_out(k) for k in keys])


def create_key(session: Session, user: Principal, body: ApiKeyCreate) -> ApiKeyOut:
    """A new key acting as `user`; the answer holds its secret, shown this once. Commits."""
    secret = new_api_key()
    key = ApiKey(
        user_id=user.id,
        name=body.name,
        prefix=secret[:12],
        key_hash=token_digest(secret),
    )
    session.add(key)
    record(session, "api_keys.created", body.name)
    session.commit()
    return _out(key, secret)


def revoke_key(session: Session, user: Principal, key_id: int) -> None:
    """Revoke one of `user`'s keys (another account's is not found); commits."""
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != user.id:
        raise NotFound(f"You have no API key with id {key_id}.")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        record(session, "api_keys.revoked", key.name)
        session.commit()
