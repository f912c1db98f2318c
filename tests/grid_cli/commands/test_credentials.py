"""The `grid` command's credential store, without a server."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from grid_cli.commands.credentials import CredentialsError, CredentialStore, StoredLogin


def test_credentials_file_is_private_and_remembers_the_last_login(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "grid")
    with pytest.raises(CredentialsError, match="grid login"):
        store.get()
    store.save(StoredLogin("http://a:1", "a@example.org", "access-a", "refresh-a"))
    store.save(StoredLogin("http://b:2", "b@example.org", "access-b", "refresh-b"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert store.get().url == "http://b:2"
    assert store.get("http://a:1/").email == "a@example.org"
    with pytest.raises(CredentialsError, match="no stored login for http://c:3"):
        store.get("http://c:3")

    store.update_tokens("http://a:1", "access-2", "refresh-2")
    assert store.get().url == "http://b:2"  # refreshing a token does not switch logins
    assert store.get("http://a:1").refresh_token == "refresh-2"
    store.remove("http://b:2")
    assert store.get().url == "http://a:1"
    assert list(store.directory.iterdir()) == [store.path]  # no temporary files left over

    store.path.write_text("{not json")
    with pytest.raises(CredentialsError, match="delete it"):
        store.get()
