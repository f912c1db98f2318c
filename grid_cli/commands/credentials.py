"""The CLI's stored logins: `$GRID_CONFIG_DIR/credentials.json`, readable by its owner only."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "credentials.json"


class CredentialsError(Exception):
    """No usable stored login; the message says which command fixes it."""


@dataclass
class StoredLogin:
    """One node's saved session: who signed in and the tokens to continue it."""

    url: str
    email: str
    access_token: str
    refresh_token: str


def config_dir() -> Path:
    """`$GRID_CONFIG_DIR`, else `$XDG_CONFIG_HOME/grid`, else `~/.config/grid`."""
    explicit = os.environ.get("GRID_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "grid"


class CredentialStore:
    """Reads and writes the credentials file; every write replaces it atomically, mode 0600."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / FILE_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"current": None, "logins": {}}
        except (OSError, ValueError) as exc:
            raise CredentialsError(
                f"cannot read {self.path} ({exc}): delete it and run `grid login` again"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("logins"), dict):
            raise CredentialsError(
                f"{self.path} is not a Grid credentials file: delete it and run `grid login` again"
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600 before any secret is written into it.
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".credentials-")
        try:
            with os.fdopen(descriptor, "w") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def urls(self) -> list[str]:
        return list(self._read()["logins"])

    def get(self, url: str | None = None) -> StoredLogin:
        """The login for `url`, or the most recent one when no URL is given."""
        data = self._read()
        logins = data["logins"]
        key = (url.rstrip("/") if url else None) or data.get("current")
        if not logins or key is None:
            raise CredentialsError("not signed in: run `grid login URL --email EMAIL` first")
        entry = logins.get(key)
        if not isinstance(entry, dict):
            known = ", ".join(logins)
            raise CredentialsError(
                f"no stored login for {key} (stored: {known}): run `grid login {key} --email EMAIL`"
            )
        try:
            return StoredLogin(**entry)
        except TypeError:
            raise CredentialsError(
                f"the stored login for {key} is damaged: run `grid login {key} --email EMAIL`"
            ) from None

    def save(self, login: StoredLogin, *, make_current: bool = True) -> None:
        data = self._read()
        logins = data["logins"]
        logins[login.url] = asdict(login)
        if make_current or not data.get("current"):
            data["current"] = login.url
        self._write(data)

    def update_tokens(self, url: str, access_token: str, refresh_token: str) -> None:
        """Keep rotated tokens: the node refuses a refresh token once it has been used."""
        stored = self.get(url)
        stored.access_token, stored.refresh_token = access_token, refresh_token
        self.save(stored, make_current=False)

    def remove(self, url: str) -> None:
        data = self._read()
        logins = data["logins"]
        logins.pop(url, None)
        if data.get("current") == url:
            data["current"] = next(iter(logins), None)
        self._write(data)
