"""How the `grid` command prints: rich tables for people, JSON with `--json` for scripts."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console, OverflowMethod
from rich.table import Table

from grid_common.transport import GridError

# Hints for codes whose server message says what went wrong but not what to do next.
FIXES: dict[str, str] = {
    "duplicate_name": "pick another --name, or delete the old one with `grid datasets delete`",
    "duplicate_email": "that account exists already; see `grid users list`",
    "already_decided": "see its decision with `grid requests list`",
    "setup_required": "give the node its first account: `grid setup URL --email EMAIL`",
    "too_many_requests": "wait and try again",
    "already_set_up": "it has its first account already: sign in with `grid login`",
    "result_held": "ask the domain's owner to run `grid results release` for it",
    "no_result": "wait until the job completes: `grid jobs show JOB_ID`",
}


def to_jsonable(value: Any) -> Any:
    """Wire models as the node sends them (aliases such as `schema` included)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Indented JSON on stdout, as `--json` prints it."""
    click.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    overflow: OverflowMethod = "ellipsis",
    whole: Collection[str] = (),
) -> None:
    """A rich table; `overflow="fold"` breaks long cells over lines instead of cutting them,
    and the columns named in `whole` stay on one line while the others give way."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow=overflow, no_wrap=column in whole)
    count = 0
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
        count += 1
    if count == 0:
        click.echo(f"{title}: none.")
        return
    Console().print(table)


def describe_error(exc: GridError, *, url: str | None = None, fix: str | None = None) -> str:
    """One line: the node's message, its status and code, and the fix when the message lacks one
    (`fix`, where the command knows better than the status what to do)."""
    message = " ".join(exc.message.split())
    where = f" at {url}" if url else ""
    status = f" (HTTP {exc.status} {exc.code}{where})" if exc.status else ""
    if fix is None:
        fix = FIXES.get(exc.code)
        if exc.status == 401 and exc.code != "bad_credentials":
            fix = f"sign in again with `grid login {url or 'URL'} --email EMAIL`"
        elif exc.status == 403 and fix is None:
            fix = "sign in as an account whose role allows this"
    return f"{message}{status}" + (f"; {fix}" if fix else "")


def when(value: Any) -> str:
    """A time to the second, or nothing for a time not set yet."""
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def field_table(title: str, fields: dict[str, Any]) -> None:
    """One object's fields as a two-column table."""
    # Hashes and keys must show whole, so long values break over lines rather than get cut.
    rows = ([k, "" if v is None else v] for k, v in fields.items())
    print_table(title, ["field", "value"], rows, overflow="fold")


def print_fields(title: str, fields: dict[str, str], as_json: bool) -> None:
    """Fields as JSON with `--json`, else as a table."""
    if as_json:
        print_json(fields)
    else:
        print_table(title, ["field", "value"], fields.items())


def print_saved(path: Path, as_json: bool, **about: Any) -> None:
    """Where a download went and its size."""
    size = path.stat().st_size
    if as_json:
        print_json({**about, "path": str(path), "bytes": size})
    else:
        click.echo(f"Saved {path} ({size} bytes).")
