"""Console authorization, sessions and CSRF through Flask's test client, for every role."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grid_common.api import route_spec
from grid_common.console import is_page
from grid_common.db import db_session
from network.api.accounts import add_operator
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, PASSWORD
from tests.console.conftest import csrf_of, sign_in
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, Signer

PEOPLE = {"anonymous", "owner", "admin", "compliance_officer", "data_scientist"}
SIGNED_IN = PEOPLE - {"anonymous"}
MANAGERS = {"owner", "admin"}
REVIEWERS = {"owner", "admin", "compliance_officer"}

# Written out by hand on purpose, like the API's matrix: the same flags, checked the same way.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/static/console/<path:filename>"): PEOPLE,
    ("GET", "/login"): PEOPLE,
    ("POST", "/login"): PEOPLE,
    ("POST", "/logout"): SIGNED_IN,
    ("GET", "/"): SIGNED_IN,
    ("GET", "/requests"): SIGNED_IN,
    ("GET", "/requests/<int:request_id>"): SIGNED_IN,
    ("POST", "/requests/<int:request_id>/approve"): REVIEWERS,
    ("POST", "/requests/<int:request_id>/deny"): REVIEWERS,
    ("GET", "/jobs"): SIGNED_IN,
    ("GET", "/jobs/<int:job_id>"): SIGNED_IN,
    ("GET", "/jobs/<int:job_id>/progress"): SIGNED_IN,
    ("POST", "/jobs/<int:job_id>/cancel"): SIGNED_IN,
    ("POST", "/jobs/<int:job_id>/release"): MANAGERS,
    ("GET", "/datasets"): SIGNED_IN,
    ("GET", "/datasets/<name>"): SIGNED_IN,
    ("POST", "/datasets/<name>/delete"): MANAGERS,
    ("POST", "/datasets/<name>/budget"): {"owner"},
    ("GET", "/upload"): MANAGERS,
    ("POST", "/upload"): MANAGERS,
    ("GET", "/users"): MANAGERS,
    ("POST", "/users"): MANAGERS,
    ("POST", "/users/<int:user_id>"): MANAGERS,
    ("GET", "/keys"): SIGNED_IN,
    ("POST", "/keys"): SIGNED_IN,
    ("POST", "/keys/<int:key_id>/revoke"): SIGNED_IN,
    ("GET", "/workers"): MANAGERS,
    ("POST", "/workers"): MANAGERS,
    ("POST", "/workers/<int:worker_id>/revoke"): MANAGERS,
    ("GET", "/audit"): REVIEWERS,
    ("GET", "/audit/verify"): REVIEWERS,
}
POSTS = sorted(rule for method, rule in EXPECTED if method == "POST" and rule != "/login")

# Values that exist nowhere, so an allowed call ends in a 404 or 422 page, never a change.
PATH_VALUES = {
    "<int:request_id>": "999",
    "<int:job_id>": "999",
    "<int:user_id>": "999",
    "<int:key_id>": "999",
    "<int:worker_id>": "999",
    "<name>": "no-such-dataset",
    "<path:filename>": "console.css",
}


def fill(rule: str) -> str:
    for placeholder, value in PATH_VALUES.items():
        rule = rule.replace(placeholder, value)
    return rule


def pages(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if is_page(route_spec(app, rule.endpoint))
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def credentials(role: str) -> tuple[str, str]:
    if role == "owner":
        return OWNER_EMAIL, OWNER_PASSWORD
    return f"{role}@example.org", PASSWORD


@pytest.fixture
def signed_in(
    app: Flask, headers: dict[str, dict[str, str]]
) -> Callable[[str], tuple[FlaskClient, str]]:
    """A console client signed in as one role (the `headers` fixture made the accounts)."""

    def make(role: str) -> tuple[FlaskClient, str]:
        client = app.test_client()
        if role == "anonymous":
            return client, csrf_of(client.get("/login").get_data(as_text=True))
        return client, sign_in(client, *credentials(role))

    return make


def test_the_page_matrix_covers_every_console_page(app: Flask) -> None:
    assert pages(app) == set(EXPECTED)


@pytest.mark.parametrize("role", sorted(PEOPLE))
def test_page_matrix(signed_in: Callable[[str], tuple[FlaskClient, str]], role: str) -> None:
    client, token = signed_in(role)
    signing_out = ("POST", "/logout")  # last: it ends the session
    for (method, rule), allowed in sorted(EXPECTED.items(), key=lambda i: i[0] == signing_out):
        path = fill(rule)
        data = {"csrf_token": token} if method == "POST" else None
        response = client.open(path, method=method, data=data)
        body = response.get_data(as_text=True)
        where = f"{role} {method} {path} -> {response.status_code} {body[:300]}"
        assert response.status_code < 500, where
        if role in allowed:
            assert response.status_code not in (401, 403), where
            if rule != "/logout":  # which sends you to the sign-in page by design
                assert not (response.location or "").startswith("/login"), where
        elif role == "anonymous":
            assert response.status_code == 302, where
            assert response.location.startswith("/login"), where
        else:
            assert response.status_code == 403, where
            assert response.mimetype == "text/html", where
            assert "Not allowed" in body and "lacks the" in body, where


@pytest.mark.parametrize("token", ["missing", "wrong"])
@pytest.mark.parametrize("rule", POSTS)
def test_a_form_without_the_sessions_csrf_token_is_refused(
    signed_in: Callable[[str], tuple[FlaskClient, str]], rule: str, token: str
) -> None:
    client, _ = signed_in("owner")
    data = {} if token == "missing" else {"csrf_token": "forged-by-another-site"}
    response = client.post(fill(rule), data=data)
    assert response.status_code == 403
    assert "did not come from this console" in response.get_data(as_text=True)


def test_a_refused_form_changes_nothing(
    signed_in: Callable[[str], tuple[FlaskClient, str]], headers: dict[str, dict[str, str]]
) -> None:
    client, _ = signed_in("owner")
    form = {"email": "new@example.org", "password": "a-long-password", "role": "admin"}
    assert client.post("/users", data=form).status_code == 403
    listed = client.application.test_client().get("/api/v1/users", headers=headers["owner"])
    assert "new@example.org" not in {u["email"] for u in listed.json["items"]}


def test_sign_in_itself_needs_the_csrf_token(app: Flask) -> None:
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert response.status_code == 403
    assert client.get("/").status_code == 302


def test_wrong_password_shows_the_form_again_with_why(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"email": OWNER_EMAIL, "password": "wrong-password", "csrf_token": token}
    response = client.post("/login", data=form)
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)


def test_the_session_cookie_is_httponly_samesite_and_pages_forbid_framing(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    response = client.post("/login", data=form)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_a_session_cookie_never_authorizes_the_api(
    signed_in: Callable[[str], tuple[FlaskClient, str]],
) -> None:
    client, _ = signed_in("owner")
    assert client.get("/api/v1/users").status_code == 401
    created = client.post("/api/v1/users", json={"email": "x@example.org", "password": "p" * 12})
    assert created.status_code == 401
    assert client.get("/users").status_code == 200  # the same cookie still opens the console


def test_a_bearer_token_never_opens_the_console(
    app: Flask, headers: dict[str, dict[str, str]]
) -> None:
    response = app.test_client().get("/users", headers=headers["owner"])
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_a_session_secret_is_no_refresh_token(
    app: Flask, signed_in: Callable[[str], tuple[FlaskClient, str]]
) -> None:
    client, _ = signed_in("owner")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    content = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
    response = app.test_client().post(
        "/api/v1/auth/refresh", json={"refresh_token": content["sid"]}
    )
    assert response.status_code == 401


def test_signing_out_ends_the_session_for_a_copied_cookie_too(
    app: Flask, signed_in: Callable[[str], tuple[FlaskClient, str]]
) -> None:
    client, token = signed_in("owner")
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    assert cookie is not None
    copy = app.test_client()
    copy.set_cookie(name, cookie.value)
    assert copy.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert copy.get("/").location.startswith("/login")


def test_deactivating_an_account_ends_its_console_session(
    signed_in: Callable[[str], tuple[FlaskClient, str]], headers: dict[str, dict[str, str]]
) -> None:
    scientist, _ = signed_in("data_scientist")
    assert scientist.get("/").status_code == 200
    owner, token = signed_in("owner")
    users = owner.application.test_client().get("/api/v1/users", headers=headers["owner"]).json
    [target] = [u["id"] for u in users["items"] if u["role"] == "data_scientist"]
    form = {"role": "data_scientist", "is_active": "false", "csrf_token": token}
    assert owner.post(f"/users/{target}", data=form).status_code == 302
    assert scientist.get("/").location.startswith("/login")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_sign_in_never_sends_you_off_the_site(app: Flask, target: str) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    response = client.post("/login", query_string={"next": target}, data=form)
    assert response.status_code == 302
    assert response.location == "/"


def test_descriptions_are_text_never_markup(
    signed_in: Callable[[str], tuple[FlaskClient, str]],
) -> None:
    client, token = signed_in("owner")
    csv = "a,b,target\n" + "\n".join(f"{i},{i * 2},{i % 2}" for i in range(30))
    form = {
        "csrf_token": token,
        "name": "tricky",
        "label": "target",
        "description": "<script>alert('x')</script><img src=x onerror=alert(1)>",
        "file": (io.BytesIO(csv.encode()), "tricky.csv"),
    }
    uploaded = client.post("/upload", data=form, content_type="multipart/form-data")
    assert uploaded.status_code == 302
    for path in ("/datasets", "/datasets/tricky"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(" in html


def test_a_refused_form_goes_back_with_the_reason(
    signed_in: Callable[[str], tuple[FlaskClient, str]],
) -> None:
    client, token = signed_in("owner")
    form = {"email": "not-an-email", "password": "short", "role": "admin", "csrf_token": token}
    response = client.post("/users", data=form, headers={"Referer": "http://localhost/users"})
    assert response.status_code == 302 and response.location == "/users"
    html = client.get("/users").get_data(as_text=True)
    assert "email:" in html and "password:" in html


# --- the network console ---------------------------------------------------------------

NETWORK_PEOPLE = {"anonymous", "operator", "data_scientist"}
NETWORK_SIGNED_IN = NETWORK_PEOPLE - {"anonymous"}
NETWORK_EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/static/console/<path:filename>"): NETWORK_PEOPLE,
    ("GET", "/login"): NETWORK_PEOPLE,
    ("POST", "/login"): NETWORK_PEOPLE,
    ("POST", "/logout"): NETWORK_SIGNED_IN,
    ("GET", "/"): NETWORK_SIGNED_IN,
    ("GET", "/associations"): {"operator"},
    ("POST", "/associations/<int:association_id>/approve"): {"operator"},
    ("POST", "/associations/<int:association_id>/reject"): {"operator"},
    ("POST", "/associations/<int:association_id>/remove"): {"operator"},
    ("GET", "/domains"): NETWORK_SIGNED_IN,
    ("GET", "/search"): NETWORK_SIGNED_IN,
    ("GET", "/federated"): NETWORK_SIGNED_IN,
    ("GET", "/federated/<int:job_id>"): NETWORK_SIGNED_IN,
    ("GET", "/federated/<int:job_id>/progress"): NETWORK_SIGNED_IN,
    ("POST", "/federated/<int:job_id>/cancel"): NETWORK_SIGNED_IN,
}
NETWORK_POSTS = sorted(
    rule for method, rule in NETWORK_EXPECTED if method == "POST" and rule != "/login"
)


def test_the_network_page_matrix_covers_every_console_page(network_app: Flask) -> None:
    assert pages(network_app) == set(NETWORK_EXPECTED)


def network_console(app: Flask, role: str) -> tuple[FlaskClient, str]:
    """A network console client signed in as `role` (a data scientist is made first)."""
    client = app.test_client()
    if role == "anonymous":
        return client, csrf_of(client.get("/login").get_data(as_text=True))
    if role == "operator":
        return client, sign_in(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    with app.app_context():
        add_operator(db_session(), "scientist@example.org", PASSWORD, role=role)
    return client, sign_in(client, "scientist@example.org", PASSWORD)


def fill_network(rule: str) -> str:
    # Ids that exist nowhere, so an allowed call ends in a 404 page, never a change.
    return (
        rule.replace("<int:association_id>", "999")
        .replace("<int:job_id>", "999")
        .replace("<path:filename>", "console.js")
    )


@pytest.mark.parametrize("role", sorted(NETWORK_PEOPLE))
def test_network_page_matrix(network_app: Flask, role: str) -> None:
    client, token = network_console(network_app, role)
    for (method, rule), allowed in sorted(
        NETWORK_EXPECTED.items(), key=lambda i: "logout" in i[0][1]
    ):
        path = fill_network(rule)
        data = {"csrf_token": token} if method == "POST" else None
        response = client.open(path, method=method, data=data)
        body = response.get_data(as_text=True)
        where = f"{role} {method} {path} -> {response.status_code} {body[:300]}"
        assert response.status_code < 500, where
        if role in allowed:
            assert response.status_code not in (401, 403), where
            if rule != "/logout":
                assert not (response.location or "").startswith("/login"), where
        elif role == "anonymous":
            assert response.status_code == 302, where
            assert response.location.startswith("/login"), where
        else:
            assert response.status_code == 403, where
            assert "Not allowed" in body and "lacks the" in body, where


@pytest.mark.parametrize("token", ["missing", "wrong"])
@pytest.mark.parametrize("rule", NETWORK_POSTS)
def test_a_network_form_without_the_sessions_csrf_token_is_refused(
    network_app: Flask, rule: str, token: str
) -> None:
    client, _ = network_console(network_app, "operator")
    data = {} if token == "missing" else {"csrf_token": "forged-by-another-site"}
    response = client.post(fill_network(rule), data=data)
    assert response.status_code == 403
    assert "did not come from this console" in response.get_data(as_text=True)


def test_an_operator_decides_join_requests_in_the_console(
    network_app: Flask, make_signer: Callable[[], Signer]
) -> None:
    joining, unknown = make_signer(), make_signer()
    first = joining.join(name="hospital-a").json["id"]
    second = unknown.join(name="unknown-lab").json["id"]
    client = network_app.test_client()
    token = sign_in(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    overview = client.get("/").get_data(as_text=True)
    assert "hospital-a" in overview and "unknown-lab" in overview

    approved = client.post(
        f"/associations/{first}/approve", data={"csrf_token": token, "reason": "known"}
    )
    assert approved.status_code == 302
    rejected = client.post(
        f"/associations/{second}/reject", data={"csrf_token": token, "reason": "who?"}
    )
    assert rejected.status_code == 302
    assert joining.call("GET", "/api/v1/associations/self").json["status"] == "approved"
    assert unknown.call("GET", "/api/v1/associations/self").json["status"] == "rejected"
    listed = client.get("/associations").get_data(as_text=True)
    assert "who?" in listed and "hospital-a joined the network." in listed
