"""The client's real address behind reverse proxies: `GRID_TRUSTED_PROXIES` hops of them.

Rate limits and the audit log key on `request.remote_addr`. Behind a load balancer that is the
balancer's address for everyone, so one client's failed sign-ins would lock every other client
out. With N trusted hops, werkzeug's ProxyFix takes the client's address (and scheme) from what
the nearest N proxies appended to `X-Forwarded-For` (and `X-Forwarded-Proto`); entries further
left were written by the client and are never believed. With 0 (the default) the headers are
ignored, since a client that reaches the node directly could write them to dodge its limits.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def trust_proxies(app: Flask, hops: int) -> None:
    """Read the client's address and scheme from the last `hops` proxies' forwarding headers.

    `X-Forwarded-Host` and `-Port` stay untrusted: the nodes build no URL from the Host header.
    """
    if hops < 0:
        raise ValueError(f"GRID_TRUSTED_PROXIES must be 0 or more, got {hops}")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
