"""Owner, admin and operator commands: accounts, invites, settings, API keys, the audit log,
single requests, jobs and associations, and downloads; they register on `main`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast, get_args

import click
from pydantic import ValidationError

from grid_cli.client.domain import DomainClient
from grid_cli.commands.app import (
    ROLES,
    Command,
    audit,
    datasets,
    json_option,
    main,
    open_client,
    read_password,
    requests,
    url_option,
    users,
)
from grid_cli.commands.jobs import budgets, jobs, results
from grid_cli.commands.network import associations, open_network
from grid_cli.commands.output import describe_error, print_json, print_table
from grid_common.hashes import sha256_file
from grid_common.schemas import AutoApprovalRule, JobKind, JobOut, RoleName, Settings
from grid_common.transport import GridError

KINDS = list(get_args(JobKind))
NEW_PASSWORD_ENV = "GRID_NEW_PASSWORD"


@contextmanager
def fix_on(status: int, fix: str) -> Iterator[None]:
    """Name the fix for one status of the node's answer, where the command knows it best."""
    try:
        yield
    except GridError as exc:
        if exc.status != status:
            raise
        url = click.get_current_context().meta.get("grid.url")
        raise click.ClickException(describe_error(exc, url=url, fix=fix)) from None


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _fields(title: str, fields: dict[str, Any]) -> None:
    # Hashes and keys must show whole, so long values break over lines rather than get cut.
    rows = ([k, "" if v is None else v] for k, v in fields.items())
    print_table(title, ["field", "value"], rows, overflow="fold")


def _public_client(url: str) -> DomainClient:
    """A client without credentials, for the calls a node answers to anyone."""
    client = DomainClient(url)
    click.get_current_context().meta["grid.url"] = client.url
    return client


# --- first account and sign-up ----------------------------------------------------------------


@main.command("setup")
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
    client = _public_client(url)
    account = client.set_up(email, password)
    if as_json:
        print_json({"url": client.url, **account.model_dump(mode="json")})
    else:
        click.echo(
            f"Created {account.email} ({account.role}) on {client.url}; "
            f"sign in with `grid login {client.url} --email {account.email}`."
        )


@main.command("signup")
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
    client = _public_client(url)
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


# --- users ------------------------------------------------------------------------------------


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


# --- settings ---------------------------------------------------------------------------------


@main.group()
def settings() -> None:
    """The domain's settings: open sign-up, auto-approval rules, default job limits, the
    minimum group size of federated analyses, and whether metrics stream live."""


def _print_settings(value: Settings, as_json: bool) -> None:
    if as_json:
        print_json(value)
        return
    limits = value.job_limits
    _fields(
        "Settings",
        {
            "allow_signup": value.allow_signup,
            "job_limits.cpu_seconds": limits.cpu_seconds,
            "job_limits.memory_mb": limits.memory_mb,
            "job_limits.wall_seconds": limits.wall_seconds,
            "min_group_size": value.min_group_size,
            "min_peers": value.min_peers,
            "live_metrics": value.live_metrics,
        },
    )
    print_table(
        "Auto-approval rules",
        ["#", "data scientist", "dataset tag", "kind", "limits", "release on completion"],
        (
            [
                number,
                rule.data_scientist or "any",
                rule.dataset_tag or "any",
                rule.kind or "any",
                _rule_limits(rule),
                rule.release_on_completion,
            ]
            for number, rule in enumerate(value.auto_approval, start=1)
        ),
    )


def _rule_limits(rule: AutoApprovalRule) -> str:
    """A rule's conditions on the job itself, in a few words."""
    limits = [
        f"≤{rule.max_epochs} epochs" if rule.max_epochs else "",
        rule.secure_aggregation or "",
        f"ε≤{rule.max_epsilon:g}" if rule.max_epsilon else "",
        f"≤{rule.max_rounds} rounds" if rule.max_rounds else "",
        f"≥{rule.min_peers} peers" if rule.min_peers else "",
    ]
    return ", ".join(limit for limit in limits if limit)


def _valid_settings(document: Any, source: str) -> Settings:
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise click.ClickException(
            f"{source}: {where}: {first['msg']}{more}; fix it and run again "
            "(`grid settings show --json` prints the settings in this shape)"
        ) from None


@settings.command("show")
@url_option
@json_option
def settings_show(url: str | None, as_json: bool) -> None:
    """Show the settings (owner, admin and compliance officer)."""
    _print_settings(open_client(url).settings, as_json)


@settings.command("set")
@click.option(
    "--file",
    "file",
    type=click.File("r"),
    help="A whole settings document as JSON (`-` for stdin), as `grid settings show --json` "
    "prints it; the other options apply on top of it.",
)
@click.option("--allow-signup/--no-allow-signup", default=None, help="Open sign-up, or close it.")
@click.option("--cpu-seconds", type=int, help="Default job limit: CPU time of one attempt.")
@click.option("--memory-mb", type=int, help="Default job limit: memory of one attempt.")
@click.option("--wall-seconds", type=int, help="Default job limit: wall-clock time of one attempt.")
@click.option(
    "--min-group-size",
    type=click.IntRange(min=1),
    help="Federated analyses withhold any count, mean or histogram cell of fewer rows.",
)
@click.option(
    "--min-peers",
    type=click.IntRange(min=3),
    help="Federated jobs without DP release an aggregate only when this many domains are in it.",
)
@click.option(
    "--live-metrics/--no-live-metrics",
    default=None,
    help="Show data scientists loss, accuracy and row counts of jobs without DP as they run, "
    "or hold them until the result's release (fixed for a job when it is approved).",
)
@url_option
@json_option
def settings_set(
    file: IO[str] | None,
    allow_signup: bool | None,
    cpu_seconds: int | None,
    memory_mb: int | None,
    wall_seconds: int | None,
    min_group_size: int | None,
    min_peers: int | None,
    live_metrics: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Change the settings (owner only): from a JSON file, or the fields you pass."""
    limits = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "wall_seconds": wall_seconds}
    flags = [allow_signup, min_group_size, min_peers, live_metrics, *limits.values()]
    if file is None and all(v is None for v in flags):
        raise click.UsageError(
            "nothing to change: pass --file, --allow-signup/--no-allow-signup, a job limit, "
            "--min-group-size/--min-peers or --live-metrics/--no-live-metrics"
        )
    client = open_client(url)
    if file is not None:
        try:
            document = json.load(file)
        except json.JSONDecodeError as exc:
            raise click.ClickException(
                f"{file.name} is not JSON ({exc}); start from `grid settings show --json`"
            ) from None
        current = _valid_settings(document, file.name).model_dump(mode="json")
    else:
        current = client.settings.model_dump(mode="json")
    if allow_signup is not None:
        current["allow_signup"] = allow_signup
    if min_group_size is not None:
        current["min_group_size"] = min_group_size
    if min_peers is not None:
        current["min_peers"] = min_peers
    if live_metrics is not None:
        current["live_metrics"] = live_metrics
    current["job_limits"].update({k: v for k, v in limits.items() if v is not None})
    _print_settings(client.update_settings(_valid_settings(current, "settings")), as_json)


@settings.group("rules")
def settings_rules() -> None:
    """Auto-approval rules: a request is approved as it is filed when a rule matches."""


@settings_rules.command("add")
@click.option("--data-scientist", help="Only requests of this account (email).")
@click.option("--dataset-tag", help="Only requests whose every dataset has this tag.")
@click.option("--kind", type=click.Choice(KINDS), help="Only requests of this kind.")
@click.option("--max-epochs", type=click.IntRange(1), help="Jobs only: at most this many epochs.")
@click.option(
    "--secure-aggregation",
    type=click.Choice(["ckks"]),
    help="Federated jobs and analyses only: their updates must be encrypted.",
)
@click.option(
    "--max-epsilon",
    type=click.FloatRange(min=0, min_open=True),
    help="Only requests with differential privacy spending at most this epsilon.",
)
@click.option(
    "--max-rounds", type=click.IntRange(1), help="Federated only: at most this many rounds."
)
@click.option(
    "--min-peers",
    type=click.IntRange(1),
    help="Federated only: every round needs at least this many domains (its min_domains).",
)
@click.option(
    "--release-on-completion", is_flag=True, help="Jobs only: release results as they come in."
)
@url_option
@json_option
def settings_rules_add(
    data_scientist: str | None,
    dataset_tag: str | None,
    kind: str | None,
    max_epochs: int | None,
    secure_aggregation: str | None,
    max_epsilon: float | None,
    max_rounds: int | None,
    min_peers: int | None,
    release_on_completion: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Add an auto-approval rule (owner only); auto-approved jobs run under the default limits."""
    rule = {
        "data_scientist": data_scientist,
        "dataset_tag": dataset_tag,
        "kind": kind,
        "max_epochs": max_epochs,
        "secure_aggregation": secure_aggregation,
        "max_epsilon": max_epsilon,
        "max_rounds": max_rounds,
        "min_peers": min_peers,
    }
    if all(v is None for v in rule.values()):
        # A rule without conditions would approve every request; the domain refuses it too.
        raise click.UsageError(
            "a rule needs a condition: --data-scientist, --dataset-tag, --kind, --max-epochs, "
            "--secure-aggregation, --max-epsilon, --max-rounds or --min-peers"
        )
    client = open_client(url)
    current = client.settings.model_dump(mode="json")
    current["auto_approval"].append({**rule, "release_on_completion": release_on_completion})
    _print_settings(client.update_settings(_valid_settings(current, "the rule")), as_json)


@settings_rules.command("remove")
@click.argument("number", type=int)
@url_option
@json_option
def settings_rules_remove(number: int, url: str | None, as_json: bool) -> None:
    """Remove an auto-approval rule by its number in `grid settings show` (owner only)."""
    client = open_client(url)
    current = client.settings
    if not 1 <= number <= len(current.auto_approval):
        raise click.ClickException(
            f"no rule number {number}: there are {len(current.auto_approval)}; "
            "see their numbers with `grid settings show`"
        )
    del current.auto_approval[number - 1]
    _print_settings(client.update_settings(current), as_json)


# --- API keys ---------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Your API keys: long-lived credentials for scripts, acting as your account."""


@keys.command("list")
@url_option
@json_option
def keys_list(url: str | None, as_json: bool) -> None:
    """List your API keys (their secrets are never shown again)."""
    found = open_client(url).api_keys
    if as_json:
        print_json(found)
        return
    print_table(
        "API keys",
        ["id", "name", "prefix", "created", "last used", "revoked"],
        (
            [k.id, k.name, k.prefix, _when(k.created_at), _when(k.last_used_at), k.revoked]
            for k in found
        ),
    )


@keys.command("create")
@click.argument("name")
@url_option
@json_option
def keys_create(name: str, url: str | None, as_json: bool) -> None:
    """Create an API key and print it (shown once)."""
    client = open_client(url)
    key = client.create_api_key(name)
    if as_json:
        print_json(key)
        return
    click.echo(f"API key {key.name} created (id {key.id}). The key, shown only now:")
    click.echo(key.key)
    click.echo(
        f"Use it as `Authorization: Bearer <key>`, or grid.connect({client.url!r}, api_key=<key>)."
    )


@keys.command("revoke")
@click.argument("key_id", type=int)
@url_option
@json_option
def keys_revoke(key_id: int, url: str | None, as_json: bool) -> None:
    """Revoke one of your API keys; calls with it fail from now on."""
    with fix_on(404, "see your keys' ids with `grid keys list`"):
        open_client(url).revoke_api_key(key_id)
    if as_json:
        print_json({"id": key_id, "revoked": True})
    else:
        click.echo(f"API key {key_id} revoked.")


# --- audit log --------------------------------------------------------------------------------


@audit.command("list")
@click.option("--actor", help="Only entries of this actor (an email, or a worker).")
@click.option("--action", help="Only actions starting with this, e.g. `users.` or `datasets.`.")
@click.option("--after", type=click.IntRange(0), default=0, help="Entries after this number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@url_option
@json_option
def audit_list(
    actor: str | None, action: str | None, after: int, limit: int, url: str | None, as_json: bool
) -> None:
    """List audit entries in order (owner, admin and compliance officer)."""
    entries = open_client(url).audit_log(actor=actor, action=action, after=after, limit=limit)
    if as_json:
        print_json(entries)
        return
    print_table(
        "Audit log",
        ["#", "at", "actor", "action", "target", "address", "details"],
        (
            [
                e.seq,
                e.at[:19].replace("T", " "),
                e.actor,
                e.action,
                e.target,
                e.address,
                _compact(e.details),
            ]
            for e in entries
        ),
        overflow="fold",
        whole=("#", "action"),
    )


def _compact(details: dict[str, Any], width: int = 60) -> str:
    text = json.dumps(details, separators=(",", ":"), default=str) if details else ""
    return text if len(text) <= width else text[: width - 1] + "…"


# --- one request, one job, one dataset --------------------------------------------------------


@requests.command("show")
@click.argument("request_id", type=int)
@url_option
@json_option
def requests_show(request_id: int, url: str | None, as_json: bool) -> None:
    """Show one request with its decision (reviewers: any; others: their own)."""
    with fix_on(404, "see the ids you may read with `grid requests list`"):
        request = open_client(url).request(request_id)
    info = request.info
    if as_json:
        print_json(info)
        return
    _fields(
        f"Request {info.id}",
        {
            "kind": info.kind,
            "status": info.status + (" (auto-approved)" if info.auto_approved else ""),
            "requester": info.requester,
            "datasets": ", ".join(info.datasets),
            "why": info.reason,
            "decision": info.decision_reason,
            "decided by": info.decided_by,
            "decided at": _when(info.decided_at),
            "filed": _when(info.created_at),
            "plan": json.dumps(info.plan) if info.plan else None,
            "peer domains": info.peers,
            "live metrics": info.live_metrics,
        },
    )


def _spent(info: JobOut) -> str | None:
    """A DP job's spend as its accountant counted it, against what was approved."""
    dp = (info.plan or {}).get("dp") if info.kind != "analytics" else None
    if info.epsilon_spent is None:
        return None
    approved = f" of {dp['epsilon']:g} approved (delta {dp['delta']:g})" if dp else ""
    return f"{info.epsilon_spent:.4g}{approved}"


@jobs.command("show")
@click.argument("job_id", type=int)
@url_option
@json_option
def jobs_show(job_id: int, url: str | None, as_json: bool) -> None:
    """Show one job: status, limits, metrics, result and its hashes."""
    with fix_on(404, "see the ids you may read with `grid jobs list`"):
        info = open_client(url).job_info(job_id)
    if as_json:
        print_json(info)
        return
    limits = info.limits
    _fields(
        f"Job {info.id}",
        {
            "kind": info.kind,
            "status": info.status + (" (cancelling)" if info.cancel_requested else ""),
            "requester": info.requester,
            "datasets": ", ".join(info.datasets),
            "why": info.reason,
            "attempt": f"{info.attempt} of {info.max_attempts}",
            "worker": info.worker,
            "limits": (
                f"{limits.cpu_seconds} cpu s, {limits.memory_mb} MB, {limits.wall_seconds} s"
                if limits
                else None
            ),
            "metrics": json.dumps(info.metrics) if info.metrics else None,
            "epsilon spent": _spent(info),
            "why it ended": info.failure_reason,
            "result": info.result_status,
            "filed": _when(info.created_at),
            "started": _when(info.started_at),
            "finished": _when(info.finished_at),
            "released": _when(info.released_at),
            "spec sha256": info.spec_hash,
            "result sha256": info.result_hash,
            "registry job id": info.registry_job_id,
        },
    )


@datasets.command("show")
@click.argument("name")
@url_option
@json_option
def datasets_show(name: str, url: str | None, as_json: bool) -> None:
    """Show a dataset's public metadata and schema."""
    with fix_on(404, "see the names with `grid datasets list`"):
        dataset = open_client(url).dataset(name)
    info = dataset.info
    if as_json:
        print_json(info)
        return
    _fields(
        f"Dataset {info.name}",
        {
            "description": info.description,
            "format": info.format,
            "rows": info.dataset_schema.row_count,
            "label": info.label,
            "tags": ", ".join(info.tags),
            "mock": "synthetic" if info.mock.synthetic else "uploaded",
            "citation": info.citation,
            "license": info.license,
            "size bytes": info.size_bytes,
            "created": _when(info.created_at),
        },
    )
    print_table(
        "Columns",
        ["name", "dtype", "shape"],
        (
            [c.name, c.dtype, "x".join(map(str, c.shape)) or "scalar"]
            for c in info.dataset_schema.columns
        ),
    )


def _output_option(what: str) -> Callable[[Command], Command]:
    return click.option(
        "--output",
        "--out",
        "-o",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help=f"Where to save {what}.",
    )


@datasets.command("download")
@click.argument("name")
@_output_option("the private file (default: NAME.FORMAT here)")
@url_option
@json_option
def datasets_download(name: str, output: Path | None, url: str | None, as_json: bool) -> None:
    """Save a dataset's private file (owner and admin; the read is audited)."""
    client = open_client(url)
    with fix_on(404, "see the names with `grid datasets list`"):
        info = client.dataset(name).info
    path = client.download_dataset(name, output or Path(f"{info.name}.{info.format}"))
    _print_saved(path, as_json, dataset=name)


@results.command("download")
@click.argument("job_id", type=int)
@_output_option("the trained weights (default: job-JOB_ID.safetensors here)")
@url_option
@json_option
def results_download(job_id: int, output: Path | None, url: str | None, as_json: bool) -> None:
    """Save a job's trained weights (safetensors) once released; owner and admins: any time."""
    client = open_client(url)
    with fix_on(404, "see the ids you may read with `grid jobs list`"):
        info = client.job_info(job_id)
    path = client.download_result(job_id, output or Path(f"job-{job_id}.safetensors"))
    digest = sha256_file(path)
    if info.result_hash and digest != info.result_hash:
        raise click.ClickException(
            f"{path} hashes to {digest}, not to {info.result_hash} that the domain recorded "
            "on release; download it again"
        )
    _print_saved(path, as_json, job=job_id, sha256=digest)


def _print_saved(path: Path, as_json: bool, **about: Any) -> None:
    size = path.stat().st_size
    if as_json:
        print_json({**about, "path": str(path), "bytes": size})
    else:
        click.echo(f"Saved {path} ({size} bytes).")


# --- privacy budgets --------------------------------------------------------------------------


@budgets.command("clear")
@click.argument("dataset")
@click.option("--data-scientist", help="Whose budget (email); default: the dataset's, for all.")
@click.option(
    "--network",
    help="With --data-scientist: a network's data scientist (the network's name as joined).",
)
@url_option
@json_option
def budgets_clear(
    dataset: str, data_scientist: str | None, network: str | None, url: str | None, as_json: bool
) -> None:
    """Lift an epsilon cap set with `grid budgets set` (spending stays on record)."""
    with fix_on(404, "see the names with `grid datasets list` and accounts with `grid users list`"):
        budget = open_client(url).set_privacy_budget(
            dataset, None, data_scientist=data_scientist, network=network
        )
    if as_json:
        print_json(budget)
    else:
        whose = data_scientist or "everyone"
        if network is not None:
            whose += f" via network {network}"
        click.echo(f"Budget of {whose} on {budget.dataset} lifted ({len(budget.budgets)} left).")


# --- network: one association -----------------------------------------------------------------


@associations.command("show")
@click.argument("association_id", type=int)
@url_option
@json_option
def associations_show(association_id: int, url: str | None, as_json: bool) -> None:
    """Show one association: the domain, its keys, health and the decision (operators)."""
    with fix_on(404, "see the ids with `grid associations list`"):
        item = open_network(url).association(association_id)
    if as_json:
        print_json(item)
        return
    _fields(
        f"Association {item.id}",
        {
            "domain": item.name,
            "domain id": item.domain_id,
            "url": item.url,
            "status": item.status,
            "online": item.online,
            "last seen": _when(item.last_seen),
            "datasets": item.dataset_count,
            "requested": _when(item.requested_at),
            "decided": _when(item.decided_at),
            "decided by": item.decided_by,
            "why": item.decision_reason,
            "signing key": item.signing_key,
            "encryption key": item.encryption_key,
        },
    )
