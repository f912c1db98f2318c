"""`grid login|logout|whoami|setup|signup`: your session on a node, and its first or invited
account."""

from __future__ import annotations

import click

from grid_cli.client.domain import DomainClient
from grid_cli.commands.credentials import CredentialStore, StoredLogin
from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json
from grid_cli.commands.session import fix_on, open_client, public_client, read_password
from grid_common.transport import GridError

NEW_PASSWORD_ENV = "GRID_NEW_PASSWORD"


@click.command()
@click.argument("url")
@click.option("--email", required=True, help="Your account's email.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@json_option
def login(url: str, email: str, password_stdin: bool, as_json: bool) -> None:
    """Sign in to a domain and remember the session (password: stdin, $GRID_PASSWORD or prompt)."""
    password = read_password(password_stdin, env="GRID_PASSWORD", what="password")
    client = DomainClient(url)
    click.get_current_context().meta["grid.url"] = client.url
    me = client.sign_in(email, password)
    CredentialStore().save(
        StoredLogin(
            url=client.url,
            email=me.email,
            access_token=client.access_token or "",
            refresh_token=client.refresh_token or "",
        )
    )
    if as_json:
        print_json({"url": client.url, "email": me.email, "role": me.role})
    else:
        click.echo(f"Signed in to {client.url} as {me.email} ({me.role}).")


@click.command()
@url_option
@json_option
def logout(url: str | None, as_json: bool) -> None:
    """Revoke the stored session on the node and forget it here."""
    client = open_client(url)
    try:
        client.logout()
    except GridError as exc:
        # An already dead session still gets forgotten locally.
        if exc.status != 401:
            raise
    CredentialStore().remove(client.url)
    if as_json:
        print_json({"url": client.url, "signed_out": True})
    else:
        click.echo(f"Signed out of {client.url}.")


@click.command()
@url_option
@json_option
def whoami(url: str | None, as_json: bool) -> None:
    """Show the signed-in account."""
    client = open_client(url)
    me = client.me
    if as_json:
        print_json({"url": client.url, **me.model_dump(mode="json")})
    else:
        click.echo(f"{me.email} ({me.role}) on {client.url}")


@click.command("setup")
@click.argument("url")
@click.option("--email", required=True, help="The first account's email.")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@json_option
def setup(url: str, email: str, password_stdin: bool, as_json: bool) -> None:
    """Create a new node's first account: a domain's owner or a network's operator
    (password: stdin, $GRID_NEW_PASSWORD, or a prompt on a terminal)."""
    password = read_password(
        password_stdin, env=NEW_PASSWORD_ENV, what="new password", confirm=True
    )
    client = public_client(url)
    account = client.set_up(email, password)
    if as_json:
        print_json({"url": client.url, **account.model_dump(mode="json")})
    else:
        click.echo(
            f"Created {account.email} ({account.role}) on {client.url}; "
            f"sign in with `grid login {client.url} --email {account.email}`."
        )


@click.command("signup")
@click.argument("url")
@click.option("--email", required=True, help="The invited email.")
@click.option(
    "--invite-token",
    envvar="GRID_INVITE_TOKEN",
    help="The token of your invite (or $GRID_INVITE_TOKEN); leave out where sign-up is open.",
)
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@json_option
def signup(
    url: str, email: str, invite_token: str | None, password_stdin: bool, as_json: bool
) -> None:
    """Create your account on a domain with an invite (password: stdin, $GRID_NEW_PASSWORD, or
    a prompt on a terminal)."""
    password = read_password(
        password_stdin, env=NEW_PASSWORD_ENV, what="new password", confirm=True
    )
    client = public_client(url)
    ask = "ask the domain's owner or an admin for a new invite (`grid users invite EMAIL`)"
    with fix_on(401, ask), fix_on(403, ask):
        account = client.sign_up(email, password, invite_token)
    if as_json:
        print_json({"url": client.url, **account.model_dump(mode="json")})
    else:
        click.echo(
            f"Created {account.email} ({account.role}); "
            f"sign in with `grid login {client.url} --email {account.email}`."
        )
