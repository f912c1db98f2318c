"""Helpers the domain's blueprints share: lookups that 404."""

from __future__ import annotations

from typing import Any, TypeVar

from grid_common.db import db_session
from grid_common.errors import NotFound

T = TypeVar("T")


def get_or_404(model: type[T], ident: Any, what: str) -> T:
    obj = db_session().get(model, ident)
    if obj is None:
        raise NotFound(f"No {what} with id {ident}.")
    return obj
