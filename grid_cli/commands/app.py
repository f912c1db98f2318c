"""The `grid` command: sign in, manage users, datasets, requests and the audit log, start a node."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

import click

from grid_cli.client.domain import DomainClient
from grid_cli.commands.credentials import CredentialsError, CredentialStore, StoredLogin
from grid_cli.commands.output import describe_error, print_json, print_table
from grid_cli.local.launch import DomainLaunch, exec_gunicorn, run_dev_server
from grid_common.schemas import JobLimits, RequestStatus, RoleName, TokenPair
from grid_common.transport import GridError

Command = TypeVar("Command", bound=Callable[..., Any])
ROLES = list(get_args(RoleName))
STATUSES = list(get_args(RequestStatus))


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


def url_option(command: Command) -> Command:
    return click.option(
        "--url",
        envvar="GRID_URL",
        help="Which stored login to use (default: the most recent `grid login`).",
    )(command)


def json_option(command: Command) -> Command:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        command
    )


def read_password(from_stdin: bool, *, env: str | None, what: str, confirm: bool = False) -> str:
    """A password from stdin, else the environment, else a hidden prompt on a terminal only."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException(
                f"--password-stdin read an empty line: pipe the {what} in, "
                'e.g. printf "%s\\n" "$PASSWORD" | grid ...'
            )
        return password
    if env and os.environ.get(env):
        return os.environ[env]
    if sys.stdin.isatty():
        return str(click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm))
    source = f", or set {env}" if env else ""
    raise click.ClickException(
        f"no {what} given and stdin is not a terminal: pass --password-stdin and pipe it in{source}"
    )


def open_client(url: str | None) -> DomainClient:
    """A client for a stored login; tokens the node rotates are written back at once."""
    store = CredentialStore()
    stored = store.get(url)
    click.get_current_context().meta["grid.url"] = stored.url

    def keep(tokens: TokenPair) -> None:
        store.update_tokens(stored.url, tokens.access_token, tokens.refresh_token)

    return DomainClient(
        stored.url,
        access_token=stored.access_token,
        refresh_token=stored.refresh_token,
        on_tokens=keep,
    )


@click.group(cls=GridGroup)
@click.version_option(package_name="grid-nodes", prog_name="grid")
def main() -> None:
    """Grid: share data that cannot move. Sign in with `grid login URL --email EMAIL`."""


# --- session ------------------------------------------------------------------


@main.command()
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


@main.command()
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


@main.command()
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


# --- users --------------------------------------------------------------------


@main.group()
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


# --- datasets -----------------------------------------------------------------


@main.group()
def datasets() -> None:
    """Private datasets with public metadata and mock samples."""


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Unique dataset name on the domain.")
@click.option("--label", help="The label column (or array).")
@click.option("--description", default="", help="Public description.")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for several.")
@click.option(
    "--mock",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own mock sample with the same schema (default: the domain synthesizes one).",
)
@click.option("--citation", default="", help="How to cite the dataset.")
@click.option("--license", "license_", default="", help="The dataset's license.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@url_option
@json_option
def datasets_upload(
    file: Path,
    name: str,
    label: str | None,
    description: str,
    tags: tuple[str, ...],
    mock: Path | None,
    citation: str,
    license_: str,
    progress: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Upload a CSV, Parquet, .npz or safetensors file as a private dataset."""
    dataset = open_client(url).upload_dataset(
        name,
        file,
        label=label,
        description=description,
        tags=tags,
        mock=mock,
        citation=citation,
        license=license_,
        progress=progress,
    )
    if as_json:
        print_json(dataset.info)
    else:
        kind = "synthetic" if dataset.info.mock.synthetic else "uploaded"
        click.echo(
            f"Uploaded {dataset.name}: {dataset.row_count} rows, columns "
            f"{', '.join(dataset.columns)}; {kind} mock."
        )


@datasets.command("list")
@url_option
@json_option
def datasets_list(url: str | None, as_json: bool) -> None:
    """List the domain's datasets."""
    found = open_client(url).datasets
    if as_json:
        print_json([d.info for d in found])
        return
    print_table(
        "Datasets",
        ["name", "format", "rows", "columns", "label", "tags", "mock", "size"],
        (
            [
                d.name,
                d.format,
                d.row_count,
                len(d.columns),
                d.label or "",
                ", ".join(d.tags),
                "synthetic" if d.info.mock.synthetic else "uploaded",
                _size(d.size_bytes),
            ]
            for d in found
        ),
    )


@datasets.command("delete")
@click.argument("name")
@url_option
@json_option
def datasets_delete(name: str, url: str | None, as_json: bool) -> None:
    """Delete a dataset, its private file and its mock."""
    open_client(url).delete_dataset(name)
    if as_json:
        print_json({"deleted": name})
    else:
        click.echo(f"Deleted {name}.")


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size_bytes} B"


# --- requests -----------------------------------------------------------------


@main.group()
def requests() -> None:
    """Access and job requests, and their decisions."""


@requests.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only requests with this status.")
@url_option
@json_option
def requests_list(status: str | None, url: str | None, as_json: bool) -> None:
    """List requests: all of them for reviewers, your own otherwise."""
    found = open_client(url).list_requests(cast(RequestStatus | None, status))
    if as_json:
        print_json([r.info for r in found])
        return
    print_table(
        "Requests",
        ["id", "kind", "status", "requester", "datasets", "why", "decision"],
        (
            [
                r.id,
                r.kind,
                r.status,
                r.requester,
                ", ".join(r.datasets),
                r.request_reason,
                r.reason or "",
            ]
            for r in found
        ),
    )


def _print_decision(request: Any, as_json: bool) -> None:
    if as_json:
        print_json(request.info)
    else:
        why = f": {request.reason}" if request.reason else "."
        click.echo(f"Request {request.id} {request.status}{why}")


@requests.command("approve")
@click.argument("request_id", type=int)
@click.option("--reason", default="", help="Why (the requester sees it).")
@click.option("--cpu-seconds", type=int, help="Jobs: CPU time one attempt may use.")
@click.option("--memory-mb", type=int, help="Jobs: memory one attempt may use.")
@click.option("--wall-seconds", type=int, help="Jobs: wall-clock time one attempt may take.")
@click.option(
    "--release-on-completion", is_flag=True, help="Jobs: release the result as soon as it is in."
)
@url_option
@json_option
def requests_approve(
    request_id: int,
    reason: str,
    cpu_seconds: int | None,
    memory_mb: int | None,
    wall_seconds: int | None,
    release_on_completion: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Approve a pending request (a job's limits default to the domain's settings)."""
    client = open_client(url)
    limits = None
    asked = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "wall_seconds": wall_seconds}
    if any(v is not None for v in asked.values()):
        defaults = client.settings.job_limits.model_dump()
        limits = JobLimits(**{k: defaults[k] if v is None else v for k, v in asked.items()})
    decision = client.approve(
        request_id, reason=reason, limits=limits, release_on_completion=release_on_completion
    )
    _print_decision(decision, as_json)


@requests.command("deny")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why (the requester sees it).")
@url_option
@json_option
def requests_deny(request_id: int, reason: str, url: str | None, as_json: bool) -> None:
    """Deny a pending request."""
    _print_decision(open_client(url).deny(request_id, reason=reason), as_json)


# --- audit --------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The domain's hash-chained audit log."""


@audit.command("verify")
@url_option
@json_option
def audit_verify(url: str | None, as_json: bool) -> None:
    """Recompute the audit chain; exit status 1 names the first broken entry."""
    report = open_client(url).verify_audit()
    if as_json:
        print_json(report)
    elif report.ok:
        click.echo(f"Audit log intact: {report.entries} entries, head {report.head_hash[:16]}…")
    else:
        click.echo(
            f"Audit log broken at entry {report.first_broken_seq}: {report.problem} "
            f"({report.entries} entries before it are intact).",
            err=True,
        )
    if not report.ok:
        click.get_current_context().exit(1)


# --- nodes --------------------------------------------------------------------


@main.group()
def domain() -> None:
    """Run a domain node."""


@domain.command("start")
@click.option("--name", required=True, help="The node's name (its tokens' issuer).")
@click.option("--port", required=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Database (SQLite by default), blobs and the signing key live here.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def domain_start(name: str, port: int, data_dir: Path, host: str, workers: int, dev: bool) -> None:
    """Serve a domain (GRID_DATABASE_URL, GRID_OWNER_EMAIL/PASSWORD come from the environment)."""
    launch = DomainLaunch(name=name, port=port, data_dir=data_dir, host=host, workers=workers)
    try:
        if dev:
            run_dev_server(launch)
        else:
            exec_gunicorn(launch)
    except OSError as exc:
        raise click.ClickException(
            f"cannot start the domain on {host}:{port}: {exc}; pick another --port or --host"
        ) from None


# Command groups kept in their own modules (admin, jobs, networks, registry) register on `main`.
from grid_cli.commands import (  # noqa: E402, F401
    admin,
    fl,
    jobs,
    network,
    registry,
    up,
)
