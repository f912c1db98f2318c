"""The dataset index: what each associated domain publishes of its datasets, listing the
domains, and searching the index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from grid_common.errors import BadRequest, Forbidden
from grid_common.network_schemas import (
    DomainList,
    DomainOut,
    DomainRef,
    IndexedDatasetOut,
    IndexPush,
    IndexResult,
    PublishedDataset,
    SearchHit,
    SearchQuery,
    SearchResults,
)
from grid_common.schemas import DatasetSchema
from grid_common.signing import SignedCaller
from network.models import Association, IndexedColumn, IndexedDataset, IndexedTag
from network.search import QueryError, search


def _fields(item: PublishedDataset) -> dict[str, Any]:
    schema = item.dataset_schema
    return {
        "description": item.description,
        "tags": list(item.tags),
        "tags_text": " ".join(item.tags),
        "schema": schema.model_dump(mode="json"),
        "label": item.label,
        "row_count": schema.row_count,
        "has_mock": item.has_mock,
    }


def replace_index(
    session: Session, association: Association, items: list[PublishedDataset]
) -> IndexResult:
    """Make the index hold exactly `items` for this domain; unchanged rows are left alone."""
    existing = {
        row.name: row
        for row in session.scalars(
            select(IndexedDataset).where(IndexedDataset.association_id == association.id)
        )
    }
    incoming = {item.name: item for item in items}
    gone = [row.id for name, row in existing.items() if name not in incoming]
    if gone:
        session.execute(delete(IndexedDataset).where(IndexedDataset.id.in_(gone)))
    now = datetime.now(UTC)
    for name, item in incoming.items():
        fields = _fields(item)
        row = existing.get(name)
        if row is not None and all(getattr(row, k) == v for k, v in fields.items()):
            continue
        if row is None:
            row = IndexedDataset(association_id=association.id, name=name, **fields)
            session.add(row)
            session.flush()
        else:
            for key, value in fields.items():
                setattr(row, key, value)
            session.execute(delete(IndexedTag).where(IndexedTag.dataset_id == row.id))
            session.execute(delete(IndexedColumn).where(IndexedColumn.dataset_id == row.id))
        row.updated_at = now
        tags = {tag.lower() for tag in item.tags}
        columns = {column.name.lower()[:200] for column in item.dataset_schema.columns}
        if tags:
            session.execute(insert(IndexedTag), [{"dataset_id": row.id, "tag": t} for t in tags])
        if columns:
            session.execute(
                insert(IndexedColumn), [{"dataset_id": row.id, "column": c} for c in columns]
            )
    return IndexResult(indexed=len(incoming), removed=len(gone))


def push_index(
    session: Session, node: SignedCaller, domain_id: str, body: IndexPush
) -> IndexResult:
    """The signed `node` replaces the index entries of its own datasets (only its own, and
    only while associated); commits."""
    if node.node_id != domain_id:
        raise Forbidden("A domain can only publish its own datasets.", code="not_your_domain")
    association = session.scalar(
        select(Association).where(Association.domain_id == domain_id).with_for_update()
    )
    if association is None or association.status != "approved":
        raise Forbidden(
            "This domain is not associated with the network; ask to join and wait for approval.",
            code="not_associated",
        )
    result = replace_index(session, association, body.datasets)
    session.commit()
    return result


def list_domains(session: Session) -> DomainList:
    """Associated domains: name, URL, health and how many datasets each publishes."""
    count = (
        select(func.count())
        .where(IndexedDataset.association_id == Association.id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Association, count)
        .where(Association.status == "approved")
        .order_by(Association.name, Association.id)
    )
    return DomainList(
        items=[
            DomainOut(
                id=item.domain_id,
                name=item.name,
                url=item.url,
                online=item.online,
                last_seen=item.last_seen,
                dataset_count=datasets,
            )
            for item, datasets in rows
        ]
    )


def search_datasets(session: Session, query: SearchQuery) -> SearchResults:
    """Full-text search over the datasets of associated domains, with filters; a malformed
    query is a BadRequest."""
    try:
        hits = search(
            session,
            query.q,
            tags=query.tag,
            columns=query.column,
            domain=query.domain,
            limit=query.limit,
            offset=query.offset,
        )
    except QueryError as exc:
        raise BadRequest(f"Malformed search query: {exc}", code="bad_query") from None
    return SearchResults(
        items=[
            SearchHit(
                domain=DomainRef(
                    id=hit.domain_id, name=hit.domain_name, url=hit.domain_url, online=hit.online
                ),
                dataset=IndexedDatasetOut(
                    name=hit.name,
                    description=hit.description,
                    tags=hit.tags,
                    schema=DatasetSchema.model_validate(hit.schema),
                    label=hit.label,
                    row_count=hit.row_count,
                    has_mock=hit.has_mock,
                    updated_at=hit.updated_at,
                ),
                score=round(hit.score, 6),
            )
            for hit in hits
        ]
    )
