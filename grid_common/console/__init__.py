"""What the domain and network consoles share: declared pages, sign-in sessions, CSRF, layout."""

from grid_common.console.pages import (
    CSRF_FIELD,
    NavItem,
    PageSpec,
    assets,
    check_csrf,
    csrf_token,
    init_console,
    is_page,
    make_blueprint,
    page,
    page_context,
    render_error,
    safe_next,
    validated,
)
from grid_common.console.sessions import SignInRequired, end_session, session_user_id, start_session

__all__ = [
    "CSRF_FIELD",
    "NavItem",
    "PageSpec",
    "SignInRequired",
    "assets",
    "check_csrf",
    "csrf_token",
    "end_session",
    "init_console",
    "is_page",
    "make_blueprint",
    "page",
    "page_context",
    "render_error",
    "safe_next",
    "session_user_id",
    "start_session",
    "validated",
]
