"""Console pages: each declares its permission like an API route, forms carry a CSRF token.

A page is authenticated by the console's session cookie only, and an API route by its
bearer token only: each node's `authorize_request` tells them apart with `is_page`, so a
cookie a browser sends along never authorizes the JSON API.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from grid_common.api import PUBLIC, RouteSpec, describe_validation_error
from grid_common.console.sessions import SESSION_TTL
from grid_common.errors import ApiError, Forbidden, Unprocessable, fault_error

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
_CSRF_KEY = "csrf"
# A refused form goes back to the page it came from with the message shown there.
_FORM_ERRORS = frozenset({400, 404, 409, 413, 422, 429})
_STATIC_DIR = Path(__file__).with_name("static")
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
Model = TypeVar("Model", bound=BaseModel)
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class PageSpec(RouteSpec):
    """A console page's declared access: the same permission flags, a session cookie instead
    of a bearer token."""


def is_page(spec: RouteSpec | None) -> bool:
    return isinstance(spec, PageSpec)


@dataclass(frozen=True)
class NavItem:
    """A link of the console's menu, shown to accounts that hold `permission`."""

    endpoint: str
    label: str
    permission: str


def page_context(
    nav: Iterable[NavItem], may: Callable[[str], bool], user: object, node_name: str
) -> dict[str, Any]:
    """What every page template of a console gets: the account, its menu, the node's name."""
    links = []
    for item in nav:
        if not may(item.permission):
            continue
        url = url_for(item.endpoint)
        current = request.path == url if url == "/" else request.path.startswith(url)
        links.append({"url": url, "label": item.label, "current": current})
    return {
        "user": user,
        "nav": links,
        "may": may,
        "home_url": url_for("console.overview"),
        "sign_out_url": url_for("console.sign_out"),
        "node_name": node_name,
    }


def page(
    bp: Blueprint,
    rule: str,
    *,
    methods: Iterable[str] = ("GET",),
    permission: str,
    summary: str,
    before_setup: bool = False,
) -> Callable[[View], View]:
    """Register a console page; every method but GET must carry the session's CSRF token."""
    spec = PageSpec(
        permission=permission, summary=summary, before_setup=before_setup, tags=(bp.name,)
    )

    def decorator(fn: View) -> View:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            if request.method not in ("GET", "HEAD"):
                check_csrf()
            return fn(**kwargs)

        view.route_spec = spec  # type: ignore[attr-defined]
        bp.add_url_rule(rule, view_func=view, methods=list(methods))
        return fn

    return decorator


def csrf_token() -> str:
    """The session's CSRF token, made on first use (signed-out visitors get one too)."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def check_csrf() -> None:
    expected = session.get(_CSRF_KEY)
    sent = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(expected, sent):
        raise Forbidden(
            "This form is out of date or did not come from this console; reload the page and "
            "send it again.",
            code="csrf_failed",
        )


def validated(model: type[Model], data: Mapping[str, Any]) -> Model:
    """A form's fields as a wire model; 422 naming the field when they do not fit."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise Unprocessable(describe_validation_error(exc)) from None


def _safe_path(target: str | None) -> str | None:
    """`target` if it is a path on this site (no scheme, host or protocol-relative trick)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _referrer_path(req: Request) -> str | None:
    if not req.referrer:
        return None
    parts = urlsplit(req.referrer)
    if parts.netloc != req.host:
        return None
    return _safe_path(parts.path + (f"?{parts.query}" if parts.query else ""))


def render_error(status: int, message: str) -> tuple[str, int]:
    return render_template("console/error.html", status=status, message=message), status


def make_blueprint(name: str, import_name: str, *, sign_in_endpoint: str) -> Blueprint:
    """A node's console blueprint: its templates, HTML error pages, security headers."""
    bp = Blueprint(name, import_name, template_folder="templates")

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Any:
        if exc.status == 401:
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for(sign_in_endpoint, next=_safe_path(target)))
        back = _referrer_path(request)
        if request.method == "POST" and exc.status in _FORM_ERRORS and back:
            flash(exc.message, "error")
            return redirect(back)
        return render_error(exc.status, exc.message)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        return render_error(exc.code or 500, exc.description or exc.name)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        fault = fault_error(exc)
        if fault is not None:  # the database away or the disk full: the page says so, not 500
            log.error("%s in the console: %s", fault.code, exc)
            html, status = render_error(fault.status, fault.message)
            return html, status, fault.headers
        log.exception("unhandled error in the console")
        return render_error(500, "Something went wrong on the server; see the node's log.")

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(_HEADERS)
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp


def safe_next() -> str | None:
    """The `next` page to go to after signing in, if it is a path on this site."""
    return _safe_path(request.values.get("next"))


assets = Blueprint("console_assets", __name__, template_folder="templates")


def _static(filename: str) -> Response:
    response = send_from_directory(_STATIC_DIR, filename, max_age=3600)
    response.headers.update(_HEADERS)
    return response


_static.route_spec = PageSpec(  # type: ignore[attr-defined]
    permission=PUBLIC, summary="The console's style sheet and script", before_setup=True
)
assets.add_url_rule("/static/console/<path:filename>", "static", _static)


class _SessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure whenever the console is reached over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    # API calls carry no session cookie: they get an empty session without building a cookie
    # signer, and leave no cookie work for the response (a measurable share of each call).
    def open_session(self, app: Flask, incoming: Request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in incoming.cookies:
            return self.session_class()
        return super().open_session(app, incoming)

    def save_session(self, app: Flask, state: SessionMixin, response: Response) -> None:
        if state or state.modified or state.accessed:
            super().save_session(app, state, response)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19] + " UTC"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def init_console(app: Flask, *, cookie_name: str, title: str) -> None:
    """Session cookie settings, template helpers and the shared assets, once per app."""
    app.config.update(
        SESSION_COOKIE_NAME=cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=SESSION_TTL,
    )
    app.session_interface = _SessionInterface()
    app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=CSRF_FIELD, console=title)
    app.jinja_env.filters["when"] = _when
    app.register_blueprint(assets)
