"""`grid settings …`: open sign-up, default job limits and auto-approval rules."""

from __future__ import annotations

import json
from typing import IO, Any, get_args

import click
from pydantic import ValidationError

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import field_table, print_json, print_table
from grid_cli.commands.session import open_client
from grid_common.schemas import AutoApprovalRule, JobKind, Settings

KINDS = list(get_args(JobKind))


@click.group()
def settings() -> None:
    """The domain's settings: open sign-up, auto-approval rules, default job limits, the
    minimum group size of federated analyses, and whether metrics stream live."""


def _print_settings(value: Settings, as_json: bool) -> None:
    if as_json:
        print_json(value)
        return
    limits = value.job_limits
    field_table(
        "Settings",
        {
            "allow_signup": value.allow_signup,
            "job_limits.cpu_seconds": limits.cpu_seconds,
            "job_limits.memory_mb": limits.memory_mb,
            "job_limits.wall_seconds": limits.wall_seconds,
            "min_group_size": value.min_group_size,
            "min_peers": value.min_peers,
            "stake_wei": value.stake_wei,
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
    "--stake",
    help="The stake every participant of a federated job deposits on chain, e.g. 0.01ether "
    "(0: none); this domain deposits it before attesting, never more.",
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
    stake: str | None,
    live_metrics: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Change the settings (owner only): from a JSON file, or the fields you pass."""
    from grid_common.ether import parse_wei

    limits = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "wall_seconds": wall_seconds}
    flags = [allow_signup, min_group_size, min_peers, stake, live_metrics, *limits.values()]
    if file is None and all(v is None for v in flags):
        raise click.UsageError(
            "nothing to change: pass --file, --allow-signup/--no-allow-signup, a job limit, "
            "--min-group-size/--min-peers, --stake or --live-metrics/--no-live-metrics"
        )
    try:
        stake_wei = None if stake is None else parse_wei(0 if stake.strip() == "0" else stake)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stake") from None
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
    if stake_wei is not None:
        current["stake_wei"] = stake_wei
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
