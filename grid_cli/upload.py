"""Streaming multipart bodies with an optional progress bar for file uploads."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

FormFields = Sequence[tuple[str, str]]


def show_progress(requested: bool | None) -> bool:
    """Whether to draw a bar: as asked, else only when stderr is a terminal."""
    if requested is not None:
        return requested
    return sys.stderr.isatty()


@contextmanager
def multipart_body(
    fields: FormFields,
    files: Sequence[tuple[str, Path]],
    *,
    progress: bool,
    description: str = "Uploading",
) -> Iterator[MultipartEncoderMonitor]:
    """A streaming multipart body of form fields and files; the bar advances as bytes are read."""
    with ExitStack() as stack:
        parts: list[tuple[str, object]] = list(fields)
        for field, path in files:
            handle = stack.enter_context(path.open("rb"))
            # The server reads the format from the file name's extension; send only the name.
            parts.append((field, (path.name, handle, "application/octet-stream")))
        encoder = MultipartEncoder(fields=parts)
        bar = stack.enter_context(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                # stderr: stdout may be carrying --json output.
                console=Console(stderr=True),
                transient=True,
                disable=not progress,
            )
        )
        task = bar.add_task(description, total=encoder.len)

        def advance(monitor: MultipartEncoderMonitor) -> None:
            bar.update(task, completed=monitor.bytes_read)

        yield MultipartEncoderMonitor(encoder, advance)
