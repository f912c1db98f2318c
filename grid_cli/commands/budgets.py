"""`grid budgets …`: privacy budgets (epsilon) per dataset and per data scientist."""

from __future__ import annotations

from typing import Any

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.commands.session import fix_on, open_client


@click.group()
def budgets() -> None:
    """Privacy budgets (epsilon) per dataset and per data scientist."""


@budgets.command("set")
@click.argument("dataset")
@click.argument("epsilon", type=float)
@click.option("--data-scientist", help="Whose budget (email); default: the dataset's, for all.")
@click.option(
    "--network",
    help="With --data-scientist: a network's data scientist (the network's name as joined).",
)
@url_option
@json_option
def budgets_set(
    dataset: str,
    epsilon: float,
    data_scientist: str | None,
    network: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Cap the epsilon DP jobs may spend on a dataset; jobs on it must then train with DP."""
    client = open_client(url)
    budget = client.set_privacy_budget(
        dataset, epsilon, data_scientist=data_scientist, network=network
    )
    _print_budget(budget, as_json)


@budgets.command("show")
@click.argument("dataset")
@url_option
@json_option
def budgets_show(dataset: str, url: str | None, as_json: bool) -> None:
    """Budgets on a dataset with what is spent and left."""
    _print_budget(open_client(url).privacy_budget(dataset), as_json)


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


def _print_budget(budget: Any, as_json: bool) -> None:
    if as_json:
        print_json(budget)
        return
    print_table(
        f"Privacy budget of {budget.dataset} (spent in all: {budget.spent:g})",
        ["whose", "epsilon", "spent", "left"],
        ([_whose(b), f"{b.epsilon:g}", f"{b.spent:g}", f"{b.left:g}"] for b in budget.budgets),
    )


def _whose(line: Any) -> str:
    if line.network is not None:
        return f"{line.data_scientist} via network {line.network}"
    return str(line.data_scientist or "everyone")
