"""Search over the dataset index: a small query language, rendered safely for each backend.

A query is words (all must match), "quoted phrases", `OR` between alternatives and `-word`
to exclude. It is parsed here and rendered with every user word in a bind parameter or a
quoted FTS5 string, so no input can reach the database's own query syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from grid_common.db import UtcDateTime

_WORD = re.compile(r"\w+")
MAX_TERMS = 32
# FTS5 bm25 column weights: name, tags, description.
_SQLITE_WEIGHTS = "10.0, 5.0, 1.0"


class QueryError(ValueError):
    """A malformed search query; the message says what to fix."""


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]
    negated: bool = False


Group = tuple[Term, ...]


def parse_query(query: str) -> list[Group]:
    """Alternatives (OR), each a group of terms that must all match; [] for an empty query."""
    if any(ord(c) < 32 or ord(c) == 127 for c in query):
        raise QueryError("The query contains control characters.")
    groups: list[list[Term]] = [[]]
    position, expect_term = 0, False
    while position < len(query):
        char = query[position]
        if char.isspace():
            position += 1
            continue
        negated = char == "-" and position + 1 < len(query) and query[position + 1] == '"'
        if char == '"' or negated:
            start = position + (2 if negated else 1)
            end = query.find('"', start)
            if end < 0:
                raise QueryError(f"Unbalanced quote at position {start}: close the phrase.")
            words = tuple(w.lower() for w in _WORD.findall(query[start:end]))
            if not words:
                raise QueryError(f"The phrase at position {start} has no words.")
            groups[-1].append(Term(words, negated))
            position, expect_term = end + 1, False
            continue
        end = position
        while end < len(query) and not query[end].isspace() and query[end] != '"':
            end += 1
        token, position = query[position:end], end
        if token == "OR":
            if not groups[-1] or expect_term:
                raise QueryError("OR needs words on both sides.")
            groups.append([])
            expect_term = True
            continue
        negated = token.startswith("-")
        words = tuple(w.lower() for w in _WORD.findall(token))
        if not words:
            if negated:
                raise QueryError(f"'{token}' excludes nothing: put a word right after the '-'.")
            continue  # punctuation alone carries nothing to search for
        groups[-1].append(Term(words, negated))
        expect_term = False
    if expect_term:
        raise QueryError("OR needs words on both sides.")
    if groups == [[]]:
        return []
    if sum(len(g) for g in groups) > MAX_TERMS:
        raise QueryError(f"Too many terms; use at most {MAX_TERMS}.")
    for group in groups:
        if not any(not t.negated for t in group):
            raise QueryError("Every alternative needs a word to search for, not only exclusions.")
    return [tuple(g) for g in groups]


def _fts5_string(term: Term) -> str:
    return '"' + " ".join(term.words).replace('"', '""') + '"'


def render_fts5(groups: list[Group]) -> str:
    """The FTS5 MATCH expression: quoted strings joined by AND, NOT and OR."""
    alternatives = []
    for group in groups:
        wanted = " AND ".join(_fts5_string(t) for t in group if not t.negated)
        unwanted = " OR ".join(_fts5_string(t) for t in group if t.negated)
        alternatives.append(f"(({wanted}) NOT ({unwanted}))" if unwanted else f"({wanted})")
    return " OR ".join(alternatives)


def render_tsquery(groups: list[Group], params: dict[str, Any]) -> str:
    """A PostgreSQL tsquery expression; every word goes in through a bind parameter."""
    alternatives = []
    for group in groups:
        parts = []
        for term in group:
            name = f"w{len(params)}"
            params[name] = " ".join(term.words)
            part = f"phraseto_tsquery('english', :{name})"
            parts.append(f"!!{part}" if term.negated else part)
        alternatives.append("(" + " && ".join(parts) + ")")
    return " || ".join(alternatives)


@dataclass(frozen=True)
class Hit:
    domain_id: str
    domain_name: str
    domain_url: str
    online: bool
    name: str
    description: str
    tags: list[str]
    schema: dict[str, Any]
    label: str | None
    row_count: int
    has_mock: bool
    updated_at: datetime
    score: float


_COLUMNS = (
    "a.domain_id AS domain_id, a.name AS domain_name, a.url AS domain_url, a.online AS online, "
    "d.name AS name, d.description AS description, d.tags AS tags, d.schema AS schema, "
    "d.label AS label, d.row_count AS row_count, d.has_mock AS has_mock, d.updated_at AS updated_at"
)
_TYPES: dict[str, TypeEngine[Any]] = {
    "domain_id": String(),
    "domain_name": String(),
    "domain_url": String(),
    "online": Boolean(),
    "name": String(),
    "description": Text(),
    "tags": JSON(),
    "schema": JSON(),
    "label": String(),
    "row_count": Integer(),
    "has_mock": Boolean(),
    "updated_at": UtcDateTime(),
}


def search(
    session: Session,
    query: str,
    *,
    tags: list[str],
    columns: list[str],
    domain: str | None,
    limit: int,
    offset: int,
) -> list[Hit]:
    """Datasets of approved domains that match, best first. Raises QueryError."""
    groups = parse_query(query)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = ["a.status = 'approved'"]
    for i, tag in enumerate(tags):
        params[f"tag{i}"] = tag.lower()
        where.append(
            f"EXISTS (SELECT 1 FROM indexed_tags t WHERE t.dataset_id = d.id AND t.tag = :tag{i})"
        )
    for i, column in enumerate(columns):
        params[f"col{i}"] = column.lower()
        where.append(
            "EXISTS (SELECT 1 FROM indexed_columns c "
            f'WHERE c.dataset_id = d.id AND c."column" = :col{i})'
        )
    if domain:
        params["domain"] = domain
        where.append("(a.domain_id = :domain OR a.name = :domain)")

    source = "indexed_datasets d JOIN associations a ON a.id = d.association_id"
    score = "0.0"
    if groups and session.get_bind().dialect.name == "postgresql":
        tsquery = render_tsquery(groups, params)
        source += f" CROSS JOIN ({'SELECT ' + tsquery} AS q) s"
        where.append("d.search_vector @@ s.q")
        score = "ts_rank_cd(d.search_vector, s.q)"
    elif groups:
        params["match"] = render_fts5(groups)
        source = (
            f"(SELECT rowid AS id, -bm25(indexed_datasets_fts, {_SQLITE_WEIGHTS}) AS relevance "
            "FROM indexed_datasets_fts WHERE indexed_datasets_fts MATCH :match) f "
            "JOIN indexed_datasets d ON d.id = f.id "
            "JOIN associations a ON a.id = d.association_id"
        )
        score = "f.relevance"
    statement = text(
        f"SELECT {_COLUMNS}, {score} AS score FROM {source} WHERE {' AND '.join(where)} "
        "ORDER BY score DESC, a.name, d.name LIMIT :limit OFFSET :offset"
    ).columns(**_TYPES, score=Float())
    return [
        Hit(**{**row._asdict(), "score": float(row.score)})
        for row in session.execute(statement, params)
    ]
