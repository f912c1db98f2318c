"""Content-addressed blob store: files named by their sha256, written atomically.

Every blob is written to a temporary file in the store's own `tmp/` directory (the same
filesystem, so the final rename is atomic), flushed to the disk, then renamed to its digest.
A write that fails, a full disk included, leaves no temporary file behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Blobs live at `root/ab/abcdef…`; a digest is the only name that reaches the filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A temporary file in the store's own filesystem, removed unless committed."""
        fd, name = tempfile.mkstemp(dir=self.tmp)
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def commit(self, staged: Path) -> tuple[str, int, bool]:
        """Move a staged file into place. Returns (digest, size, whether it is new).

        The file reaches the disk before its name does, and the rename reaches it before the
        caller records the digest: after a crash a blob is whole or absent, never cut short.
        """
        digest = file_digest(staged)
        target = self.path(digest)
        if target.exists():
            return digest, target.stat().st_size, False
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync(staged)
        os.replace(staged, target)
        _fsync(target.parent)
        return digest, target.stat().st_size, True

    def put_bytes(self, data: bytes) -> tuple[str, int, bool]:
        with self.staging() as staged:
            staged.write_bytes(data)
            return self.commit(staged)

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
