"""`grid users …`: accounts on the domain."""

from __future__ import annotations

from typing import cast

import click

from grid_cli.commands.options import ROLES, json_option, url_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.commands.session import fix_on, open_client, read_password
from grid_common.schemas import RoleName


@click.group()
def users() -> None:
    """Accounts on the domain."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="data_scientist", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@url_option
@json_option
def users_add(email: str, role: str, password_stdin: bool, url: str | None, as_json: bool) -> None:
    """Create an account with a role (password: stdin, or a prompt on a terminal)."""
    password = read_password(password_stdin, env=None, what="new password", confirm=True)
    user = open_client(url).create_user(email, password, role=cast(RoleName, role))
    if as_json:
        print_json(user)
    else:
        click.echo(f"Created {user.email} ({user.role}), id {user.id}.")


@users.command("list")
@url_option
@json_option
def users_list(url: str | None, as_json: bool) -> None:
    """List the domain's accounts."""
    accounts = open_client(url).users
    if as_json:
        print_json(accounts)
        return
    print_table(
        "Users",
        ["id", "email", "role", "active", "created"],
        ([u.id, u.email, u.role, u.is_active, f"{u.created_at:%Y-%m-%d %H:%M}"] for u in accounts),
    )


@users.command("update")
@click.argument("user_id", type=int)
@click.option("--role", type=click.Choice(ROLES), help="The account's new role.")
@click.option(
    "--activate/--deactivate",
    "active",
    default=None,
    help="Reactivate the account, or deactivate it (its tokens and keys stop working at once).",
)
@url_option
@json_option
def users_update(
    user_id: int, role: str | None, active: bool | None, url: str | None, as_json: bool
) -> None:
    """Change an account's role, or deactivate or reactivate it (ids: `grid users list`)."""
    if role is None and active is None:
        raise click.UsageError("nothing to change: pass --role, --deactivate or --activate")
    with fix_on(404, "see the ids with `grid users list`"):
        user = open_client(url).update_user(
            user_id, role=cast(RoleName | None, role), is_active=active
        )
    if as_json:
        print_json(user)
    else:
        state = "active" if user.is_active else "deactivated"
        click.echo(f"User {user.id} {user.email}: {user.role}, {state}.")


@users.command("invite")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="data_scientist", show_default=True)
@url_option
@json_option
def users_invite(email: str, role: str, url: str | None, as_json: bool) -> None:
    """Invite someone; print the token they sign up with (shown once, valid for 7 days)."""
    client = open_client(url)
    invite = client.invite(email, cast(RoleName, role))
    if as_json:
        print_json(invite)
        return
    click.echo(
        f"Invited {invite.email} as {invite.role} until {invite.expires_at:%Y-%m-%d %H:%M} UTC. "
        "The invite's token, shown only now:"
    )
    click.echo(invite.token)
    click.echo(
        f"They sign up with: GRID_INVITE_TOKEN=<token> grid signup {client.url} "
        f"--email {invite.email}"
    )
