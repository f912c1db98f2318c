"""The dataset index: domains push their public metadata (signed), anyone lists and searches."""

from __future__ import annotations

from flask import Blueprint

from grid_common.api import PUBLIC, SIGNED, route
from grid_common.db import db_session
from grid_common.network_schemas import (
    DomainList,
    IndexPush,
    IndexResult,
    SearchQuery,
    SearchResults,
)
from network import index
from network.auth import current_node

bp = Blueprint("index", __name__, url_prefix="/api/v1")


@route(
    bp,
    "/index/<domain_id>/datasets",
    methods=["PUT"],
    permission=SIGNED,
    summary="A domain replaces the index entries of its own datasets (signed by the domain)",
    body=IndexPush,
    response=IndexResult,
)
def push_index(domain_id: str, body: IndexPush) -> IndexResult:
    return index.push_index(db_session(), current_node(), domain_id, body)


@route(
    bp,
    "/domains",
    permission=PUBLIC,
    summary="Associated domains: name, URL, health and how many datasets each publishes",
    response=DomainList,
)
def list_domains() -> DomainList:
    return index.list_domains(db_session())


@route(
    bp,
    "/search",
    permission=PUBLIC,
    summary="Full-text search over the datasets of associated domains, with filters",
    query=SearchQuery,
    response=SearchResults,
)
def search_datasets(query: SearchQuery) -> SearchResults:
    return index.search_datasets(db_session(), query)
