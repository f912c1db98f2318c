"""Sign-in entry points: `login` and `connect` for a domain, `login_network` for a network.

They sit above both clients, so the domain client never needs the network client: `connect`
with no credentials asks the node what it is and hands back the client that fits.
"""

from __future__ import annotations

from typing import Any, overload

from grid_cli.client.domain import DomainClient
from grid_cli.client.network import NetworkClient


def login(url: str, email: str, password: str, **options: Any) -> DomainClient:
    """Sign in to a domain with email and password; the client refreshes its token itself."""
    client = DomainClient(url, **options)
    client.sign_in(email, password)
    return client


def login_network(url: str, email: str, password: str, **options: Any) -> NetworkClient:
    """Sign in to a network (an operator, or a data scientist who runs federated jobs)."""
    client = NetworkClient(url, **options)
    if client.health().kind != "network":
        client.close()
        raise ValueError(f"{url} is a domain: use grid.login(url, email, password)")
    client.sign_in(email, password)
    return client


@overload
def connect(
    url: str,
    api_key: str,
    *,
    access_token: str | None = None,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: str,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: None = None,
    refresh_token: str,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: None = None,
    refresh_token: None = None,
    **options: Any,
) -> NetworkClient: ...


def connect(
    url: str,
    api_key: str | None = None,
    *,
    access_token: str | None = None,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient | NetworkClient:
    """Connect to a domain with an API key (or saved tokens), checked against it at once;
    or, with no credentials, to a network, which anyone may search."""
    if not (api_key or access_token or refresh_token):
        network = NetworkClient(url, **options)
        if network.health().kind == "network":
            return network
        network.close()
        raise ValueError(
            f"{url} is a domain: connect() needs api_key= (or access_token=/refresh_token=); "
            "use grid.login(url, email, password) to sign in with a password"
        )
    client = DomainClient(
        url, api_key=api_key, access_token=access_token, refresh_token=refresh_token, **options
    )
    if not (api_key or access_token):
        client.refresh_tokens()
    _ = client.me
    return client
