"""What `grid chain` and `grid registry` share: the chain's errors that a user can fix."""

from __future__ import annotations


def registry_errors() -> tuple[type[BaseException], ...]:
    """The errors a chain or registry command turns into one line (imported late: the chain
    client is only loaded by the commands that use it)."""
    from registry.chain import ChainError
    from registry.errors import RegistryError

    return (RegistryError, ChainError, LookupError, ValueError, PermissionError)
