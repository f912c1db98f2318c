"""The SDK's progress bars on stderr: when to draw them, and the bar an upload advances."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from requests_toolbelt import MultipartEncoderMonitor
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from grid_common.transport import FormFields, multipart_body


def show_progress(requested: bool | None) -> bool:
    """Whether to draw a bar: as asked, else only when stderr is a terminal."""
    if requested is not None:
        return requested
    return sys.stderr.isatty()


@contextmanager
def upload_body(
    fields: FormFields,
    files: Sequence[tuple[str, Path]],
    *,
    progress: bool,
    description: str = "Uploading",
) -> Iterator[MultipartEncoderMonitor]:
    """The transport's streaming multipart body, with a bar that advances as bytes are read."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        # stderr: stdout may be carrying --json output.
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(read: int, total: int) -> None:
            bar.update(task, completed=read, total=total)

        with multipart_body(fields, files, on_progress=advance) as body:
            yield body
