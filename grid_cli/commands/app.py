"""The `grid` command: the `main` group, and every command group registered on it in one place.

Command modules define their commands on their own and never import this module, so the
registrations below are the one list of what `grid` can do.
"""

from __future__ import annotations

from typing import Any

import click

from grid_cli.commands.account import login, logout, setup, signup, whoami
from grid_cli.commands.associations import associations
from grid_cli.commands.audit import audit
from grid_cli.commands.budgets import budgets
from grid_cli.commands.chain import chain
from grid_cli.commands.credentials import CredentialsError
from grid_cli.commands.datasets import datasets
from grid_cli.commands.domain import domain
from grid_cli.commands.fl import fl
from grid_cli.commands.jobs import jobs
from grid_cli.commands.keys import keys
from grid_cli.commands.network import network
from grid_cli.commands.output import describe_error
from grid_cli.commands.registry import registry
from grid_cli.commands.requests import requests
from grid_cli.commands.results import results
from grid_cli.commands.settings import settings
from grid_cli.commands.up import demo, down_command, up
from grid_cli.commands.users import users
from grid_cli.commands.worker import worker
from grid_cli.commands.workers import workers
from grid_common.transport import GridError


class OneLineUsageError(click.ClickException):
    """A usage error as one line naming the help to read (click's own takes four lines)."""

    exit_code = click.UsageError.exit_code


def _one_line(exc: click.UsageError) -> click.ClickException:
    where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
    return OneLineUsageError(exc.format_message().rstrip(".") + where)


class GridGroup(click.Group):
    """Turns the errors users can fix into one line on stderr and a non-zero exit status."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `grid` prints its help
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except GridError as exc:
            url = ctx.meta.get("grid.url")
            raise click.ClickException(describe_error(exc, url=url)) from None
        except CredentialsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=GridGroup)
@click.version_option(package_name="grid-nodes", prog_name="grid")
def main() -> None:
    """Grid: share data that cannot move. Sign in with `grid login URL --email EMAIL`."""


for command in (
    login,
    logout,
    whoami,
    setup,
    signup,
    users,
    datasets,
    requests,
    audit,
    settings,
    keys,
    domain,
    network,
    associations,
    fl,
    workers,
    worker,
    jobs,
    results,
    budgets,
    chain,
    registry,
    up,
    down_command,
    demo,
):
    main.add_command(command)
