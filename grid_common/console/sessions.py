"""Console sign-in sessions, kept server-side in the node's refresh-token table.

The browser holds a random session secret inside Flask's signed session cookie (HttpOnly,
SameSite=Lax). The table holds only an HMAC of that secret keyed with the node's secret key,
never its plain sha256, so a session secret can never be redeemed as a refresh token at
`/api/v1/auth/refresh`; and since each request looks the row up, signing out (or a reused
refresh token ending every session of the account) ends the session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from flask import current_app, session
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from grid_common.accounts import RefreshTokenMixin
from grid_common.errors import Unauthorized

SESSION_TTL = timedelta(hours=12)
_SECRET_KEY = "sid"


class SignInRequired(Unauthorized):
    """No live console session: the console answers with its sign-in page."""

    code = "sign_in_required"


def _digest(secret: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"grid-console-session:" + secret.encode(), hashlib.sha256).hexdigest()


def start_session(db: Session, refresh_model: type[RefreshTokenMixin], user_id: int) -> None:
    """Sign `user_id` in: a new session row and a fresh cookie (new CSRF token too).

    The caller commits. Clearing the cookie first means a session id planted before sign-in
    never becomes a signed-in one.
    """
    secret = secrets.token_urlsafe(32)
    db.execute(
        insert(refresh_model).values(
            user_id=user_id, token_hash=_digest(secret), expires_at=datetime.now(UTC) + SESSION_TTL
        )
    )
    session.clear()
    session.permanent = True
    session[_SECRET_KEY] = secret


def session_user_id(db: Session, refresh_model: type[RefreshTokenMixin]) -> int:
    """The account of the request's console session; SignInRequired if it has none or it ended."""
    secret = session.get(_SECRET_KEY)
    if not isinstance(secret, str) or not secret:
        raise SignInRequired("Sign in to use the console.")
    user_id = db.scalar(
        select(refresh_model.user_id).where(
            refresh_model.token_hash == _digest(secret),
            refresh_model.revoked_at.is_(None),
            refresh_model.expires_at > datetime.now(UTC),
        )
    )
    if user_id is None:
        session.clear()
        raise SignInRequired("Your session has ended; sign in again.")
    return int(user_id)


def end_session(db: Session, refresh_model: type[RefreshTokenMixin]) -> None:
    """Revoke the request's session row and clear the cookie; the caller commits."""
    secret = session.get(_SECRET_KEY)
    if isinstance(secret, str) and secret:
        db.execute(
            update(refresh_model)
            .where(refresh_model.token_hash == _digest(secret), refresh_model.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    session.clear()
