"""`grid fl …`: federated jobs on a network (yours, or every one for operators): models
trained in rounds, and analyses (statistics or an exact model) computed from encrypted sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import click
import numpy as np
import pandas as pd
from pydantic import ValidationError

from grid_cli.client.analytics import Analysis, HistogramCounts
from grid_cli.commands.options import Command, json_option, url_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.commands.session import open_network
from grid_common.analytics.compute import Release
from grid_common.analytics.plan import (
    EXACT_MODELS,
    REGRESSORS,
    AnalyticsDp,
    AnalyticsError,
    ExactModel,
    parse_statistic,
)
from grid_common.federated_schemas import FINISHED_STATUSES, FederatedJobOut, RoundList
from grid_common.he import SecureAggregation
from grid_common.plan import Loss, Metric, Optimizer
from grid_common.strategy import STRATEGIES

# Names, columns and rows shown before "…": the rest is in --json.
SHOWN_NAMES = 6
SHOWN_ROWS = 20
SHOWN_MATRIX_COLUMNS = 12


@click.group()
def fl() -> None:
    """Federated jobs and analyses on a network signed in with `grid login NETWORK_URL`."""


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else ""


def _progress(job: FederatedJobOut) -> str:
    last = job.last_round
    done = 0 if last is None else last.number - (last.status == "open")
    return f"{done}/{job.rounds}"


@fl.command("list")
@url_option
@json_option
def fl_list(url: str | None, as_json: bool) -> None:
    """Your federated jobs and analyses, newest first (every one, for operators)."""
    found = [j.info for j in open_network(url).federated_jobs()]
    if as_json:
        print_json(found)
        return
    print_table(
        "Federated jobs",
        [
            "id",
            "kind",
            "status",
            "submitter",
            "rounds",
            "domains",
            "aggregation",
            "strategy",
            "result",
            "created",
        ],
        (
            [
                j.id,
                j.kind,
                j.status,
                j.submitter,
                _progress(j),
                ", ".join(p.domain for p in j.participants),
                j.secure_aggregation,
                j.strategy if j.kind == "training" else "",
                j.result,
                _when(j.created_at),
            ]
            for j in found
        ),
        whole=("kind", "status", "rounds"),
    )


@fl.command("show")
@click.argument("job_id", type=int)
@url_option
@json_option
def fl_show(job_id: int, url: str | None, as_json: bool) -> None:
    """A federated job or analysis: what it computes, its domains and their decisions, its
    rounds."""
    client = open_network(url)
    job = client.federated_job_info(job_id)
    rounds = client._get(f"/fl/jobs/{job_id}/rounds", RoundList).items
    if as_json:
        print_json({**job.model_dump(mode="json"), "round_list": rounds})
        return
    analysis = job.kind == "analytics"
    fields = {
        "kind": job.kind,
        "status": job.status + (f" ({job.failure_reason})" if job.failure_reason else ""),
        "submitter": job.submitter,
        "rounds": _progress(job),
        **(_analysis_fields(job) if analysis else _training_fields(job)),
        "spec hash": job.spec_hash,
        "result": job.result + (f", sha256 {job.result_hash}" if job.result_hash else ""),
    }
    title = "Analysis" if analysis else "Federated job"
    print_table(f"{title} {job.id}", ["field", "value"], fields.items())
    print_table(
        "Domains",
        ["domain", "dataset", "decision", "rows", "rounds reported", "attested"],
        (
            [p.domain, p.dataset, p.status, p.samples, p.rounds_reported, p.attested]
            for p in job.participants
        ),
    )
    metrics = () if analysis else ("loss", "accuracy")
    print_table(
        "Rounds",
        ["round", "status", "domains", "rows", *metrics],
        (
            [
                r.number,
                r.status,
                ", ".join(r.reporters),
                r.samples,
                *(_figure(r.metrics.get(name)) for name in metrics),
            ]
            for r in rounds
        ),
    )


def _training_fields(job: FederatedJobOut) -> dict[str, str]:
    return {
        "aggregation": f"{job.secure_aggregation}, quorum {job.min_domains}",
        "strategy": job.describe(),
    }


def _analysis_fields(job: FederatedJobOut) -> dict[str, str]:
    """What an analysis computes, from the plan the network resolved against its datasets."""
    plan = job.plan
    return {
        "computes": _computes(plan),
        "features": _names(plan.get("features") or []),
        "label": plan.get("label") or "none",
        "classes": _names(plan.get("classes") or []),
        "privacy": _privacy(plan.get("dp")),
        "aggregation": f"{job.secure_aggregation}, quorum {job.min_domains}",
    }


def _computes(plan: dict[str, Any]) -> str:
    model = plan.get("model")
    if model is None:
        return "statistics " + ", ".join(plan.get("statistics", []))
    params = {"ridge": "alpha", "gaussian_nb": "var_smoothing"}
    name = params.get(model)
    return f"model {model}" + (f" ({name} {plan[name]:g})" if name in plan else "")


def _names(values: Sequence[object]) -> str:
    """How many, and the first few: `64: p0, p1, p2, p3, p4, p5, …, p63`."""
    if not values:
        return "none"
    shown = list(values)
    if len(values) > SHOWN_NAMES + 1:
        shown = [*values[:SHOWN_NAMES], "…", values[-1]]
    return f"{len(values)}: {', '.join(map(str, shown))}"


def _privacy(dp: dict[str, Any] | None) -> str:
    if dp is None:
        return "exact sums; the owners' minimum group sizes apply"
    bounded = len(dp.get("bounds") or {})
    return (
        f"differential privacy: epsilon {dp['epsilon']:g}, delta {dp['delta']:g}, "
        f"bounds on {bounded} column(s)"
    )


def _figure(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""


@fl.command("cancel")
@click.argument("job_id", type=int)
@url_option
@json_option
def fl_cancel(job_id: int, url: str | None, as_json: bool) -> None:
    """Cancel a federated job: its domains stop at their next call to the network."""
    job = open_network(url).cancel_federated_job(job_id)
    if as_json:
        print_json(job)
    else:
        click.echo(f"Federated job {job.id} {job.status}.")


@fl.command("download")
@click.argument("job_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to save it (default: federated-JOB_ID.safetensors, or "
    "analysis-JOB_ID.safetensors for an analysis).",
)
@url_option
@json_option
def fl_download(job_id: int, output: Path | None, url: str | None, as_json: bool) -> None:
    """Save a completed job's result (safetensors: a model's final weights, an analysis's
    release), once every domain attested it."""
    from grid_common.hashes import model_hash

    client = open_network(url)
    job = client.federated_job_info(job_id)
    analysis = job.kind == "analytics"
    if job.result != "available":
        what = "analysis" if analysis else "federated job"
        result = "result" if analysis else "model"
        raise click.ClickException(
            f"{what} {job_id} has no {result} to download yet (status {job.status}, "
            f"result {job.result}); wait for it to complete: `grid fl show {job_id}`"
        )
    default = Path(f"{'analysis' if analysis else 'federated'}-{job_id}.safetensors")
    path = client.download_federated_result(job_id, output or default)
    digest = model_hash(path)
    if digest != job.result_hash:
        raise click.ClickException(
            f"{path} hashes to {digest}, not to {job.result_hash} that the domains attested: "
            "it is not this job's result; download it again"
        )
    if as_json:
        print_json({"job": job_id, "kind": job.kind, "path": str(path), "sha256": digest})
    else:
        click.echo(f"Saved {path} (sha256 {digest}, as every domain attested).")


@fl.command("verify")
@click.argument("job_id", type=int)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The result you hold (default: the job's result, downloaded).",
)
@click.option("--rpc", envvar="GRID_CHAIN_RPC_URL", help="The chain (or $GRID_CHAIN_RPC_URL).")
@click.option(
    "--registry-address",
    envvar="GRID_REGISTRY_ADDRESS",
    help="The registry you trust (or $GRID_REGISTRY_ADDRESS); never taken from a node.",
)
@click.option("--spec-hash", help="The spec hash you computed when you submitted the job.")
@url_option
@json_option
def fl_verify(
    job_id: int,
    model: Path | None,
    rpc: str | None,
    registry_address: str | None,
    spec_hash: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Check a federated job on the registry: the network coordinated it, the domains that
    approved are its participants, each attested your model's hash, the rounds are the
    network's, and the spec hash (with --spec-hash) is yours. Exit status 1 if any fails."""
    from grid_cli.commands.onchain import show_proof

    job = open_network(url).federated_job(job_id)
    show_proof(
        lambda: job.verify(rpc, model, registry_address=registry_address, spec_hash=spec_hash),
        as_json,
    )


# --- grid fl analyze ------------------------------------------------------------------------


def _parse_datasets(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    """`DOMAIN:DATASET` pairs (a domain's name or id) as `submit_analysis` takes them."""
    pairs = []
    for value in values:
        domain, _, dataset = value.rpartition(":")
        if not domain or not dataset:
            raise click.BadParameter(
                f"{value!r} is not DOMAIN:DATASET (a domain's name or id, a dataset's name), "
                "e.g. --dataset hospital-a:digits",
                ctx,
                param,
            )
        pairs.append((domain, dataset))
    return pairs


def _parse_statistics(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[str]:
    for value in values:
        try:
            parse_statistic(value)
        except AnalyticsError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return list(values)


def _parse_bounds(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    """`COLUMN=LOW:HIGH` clamping bounds, by column."""
    bounds = {}
    for value in values:
        column, _, limits = value.rpartition("=")
        low_text, _, high_text = limits.partition(":")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            low = high = math.nan
        if not column or not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise click.BadParameter(
                f"{value!r} is not COLUMN=LOW:HIGH with finite LOW < HIGH, e.g. --bounds age=0:120",
                ctx,
                param,
            )
        bounds[column] = (low, high)
    return bounds


def _dp(
    epsilon: float | None, delta: float | None, bounds: dict[str, tuple[float, float]]
) -> AnalyticsDp | None:
    """The differential privacy asked for: --epsilon and --delta together, --bounds with them."""
    if epsilon is None and delta is None:
        if bounds:
            raise click.UsageError(
                "--bounds clamp columns for differential privacy: pass --epsilon and --delta too"
            )
        return None
    if epsilon is None or delta is None:
        raise click.UsageError("differential privacy needs both --epsilon and --delta")
    try:
        return AnalyticsDp(epsilon=epsilon, delta=delta, bounds=bounds)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f"--{first['loc'][0]}: " if first["loc"] else ""
        raise click.UsageError(where + first["msg"].removeprefix("Value error, ")) from None


def _check_one_question(model: ExactModel | None, statistics: list[str]) -> None:
    """An analysis computes statistics or one model, never both."""
    if model is not None and statistics:
        raise click.UsageError(
            "ask for statistics or for one model: pass --stat (repeatable) or --model, not both"
        )
    if model is None and not statistics:
        raise click.UsageError("nothing to compute: pass --stat NAME (repeatable) or --model MODEL")


def _hyperparameters(
    model: ExactModel | None, alpha: float | None, var_smoothing: float | None
) -> dict[str, Any]:
    """The options given for the model, each only with the model it belongs to."""
    given: dict[str, Any] = {}
    for name, value, owner in (
        ("alpha", alpha, "ridge"),
        ("var_smoothing", var_smoothing, "gaussian_nb"),
    ):
        if value is None:
            continue
        if model != owner:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} is {owner}'s: pass it with --model {owner}")
        given[name] = value
    return given


def submission_options(wait_for: str) -> Callable[[Command], Command]:
    """What `grid fl analyze` and `grid fl submit` share: the reason owners read, waiting for the
    outcome (or not), and where and how to print it."""

    def decorate(command: Command) -> Command:
        for option in (
            json_option,
            url_option,
            click.option(
                "--progress/--no-progress", default=None, help="Progress bar (default: on a TTY)."
            ),
            click.option(
                "--timeout",
                type=float,
                help="Stop waiting after this many seconds (the job goes on).",
            ),
            click.option(
                "--wait/--no-wait",
                default=True,
                show_default=True,
                help=f"{wait_for}, or print the submitted job and return.",
            ),
            click.option("--reason", default="", help="Why (every domain's owner reads it)."),
        ):
            command = option(command)
        return command

    return decorate


@contextmanager
def _analysis_errors(job_id: int | None = None) -> Iterator[None]:
    """An analysis that cannot run as asked, or a wait that ran out, as one line."""
    try:
        yield
    except AnalyticsError as exc:
        raise click.ClickException(str(exc)) from None
    except TimeoutError as exc:
        raise click.ClickException(
            f"{exc}; it goes on: follow it with `grid fl show {job_id}`"
        ) from None


@fl.command("analyze")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    callback=_parse_datasets,
    metavar="DOMAIN:DATASET",
    help="A dataset on a domain (its name or id); repeat, one per domain.",
)
@click.option(
    "--stat",
    "statistics",
    multiple=True,
    callback=_parse_statistics,
    metavar="NAME",
    help="count, sum, mean, var, std, cov, corr, class_count, class_mean or "
    "hist:COLUMN:LOW:HIGH:BINS; repeat for several.",
)
@click.option(
    "--model", type=click.Choice(EXACT_MODELS), help="Fit one exact model instead of statistics."
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    help="A feature column; repeat (default: every numeric column but the label).",
)
@click.option("--label", help="The label column: per-class statistics and models need one.")
@click.option("--alpha", type=float, help="Ridge's regularization strength (default 1.0).")
@click.option("--var-smoothing", type=float, help="Gaussian NB's smoothing (default 1e-9).")
@click.option("--min-domains", type=click.IntRange(min=1), help="Quorum (default: every domain).")
@click.option(
    "--round-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds the domains have to send their sums once they all approved.",
)
@click.option("--epsilon", type=float, help="Differential privacy's epsilon (with --delta).")
@click.option("--delta", type=float, help="Differential privacy's delta (with --epsilon).")
@click.option(
    "--bounds",
    multiple=True,
    callback=_parse_bounds,
    metavar="COLUMN=LOW:HIGH",
    help="Under differential privacy, clamp a column to [LOW, HIGH]; repeat for each column read.",
)
@click.option(
    "--secure-aggregation",
    type=click.Choice(get_args(SecureAggregation)),
    default="ckks",
    show_default=True,
    help="none sends plaintext sums: for comparison only.",
)
@submission_options("Wait for the result and print it")
def fl_analyze(
    datasets: list[tuple[str, str]],
    statistics: list[str],
    model: ExactModel | None,
    columns: tuple[str, ...],
    label: str | None,
    alpha: float | None,
    var_smoothing: float | None,
    min_domains: int | None,
    round_timeout: float,
    epsilon: float | None,
    delta: float | None,
    bounds: dict[str, tuple[float, float]],
    secure_aggregation: SecureAggregation,
    reason: str,
    wait: bool,
    timeout: float | None,
    progress: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Statistics or an exact model over datasets on several domains, from encrypted sums.

    Every domain's owner approves first; figures of fewer rows than an owner's minimum group
    size are withheld. --json prints the release: what it holds, and every array by name.
    """
    _check_one_question(model, statistics)
    hyperparameters = _hyperparameters(model, alpha, var_smoothing)
    dp = _dp(epsilon, delta, bounds)
    client = open_network(url)
    with _analysis_errors():
        job = client.submit_analysis(
            datasets,
            statistics=statistics,
            model=model,
            columns=list(columns) or None,
            label=label,
            dp=dp,
            min_domains=min_domains,
            round_timeout=round_timeout,
            secure_aggregation=secure_aggregation,
            reason=reason,
            **hyperparameters,
        )
    if not wait:
        _print_submitted(job.info, as_json)
        return
    _say_waiting(job.info, "analysis", "analysis", "result")
    with _analysis_errors(job.id):
        released = job.wait(timeout, progress=progress).release()
    if as_json:
        print_json(release_json(job.id, released))
    elif released.info["kind"] == "model":
        _print_model(job.id, released)
    else:
        _print_statistics(Analysis(released, job.id))


def _say_waiting(job: FederatedJobOut, noun: str, short: str, outcome: str) -> None:
    """Tell stderr what is being waited for, and that Ctrl-C leaves the job running."""
    domains = ", ".join(p.domain for p in job.participants)
    click.echo(
        f"Submitted {noun} {job.id} to {domains}; waiting for their owners' approval and the "
        f"{outcome} (Ctrl-C stops waiting, not the {short}: `grid fl show {job.id}`).",
        err=True,
    )


def _print_submitted(job: FederatedJobOut, as_json: bool) -> None:
    if as_json:
        print_json(job)
        return
    domains = ", ".join(p.domain for p in job.participants)
    click.echo(
        f"Submitted analysis {job.id} ({job.status}) to {domains}; follow it with "
        f"`grid fl show {job.id}`, save its result with `grid fl download {job.id}`."
    )


# --- printing a release ---------------------------------------------------------------------


def release_json(job_id: int, released: Release) -> dict[str, Any]:
    """The release as JSON: its info, and every array as (nested) lists, null where withheld."""
    values = {name: _plain(array) for name, array in released.tensors.items()}
    return {"job": job_id, **released.info, "values": values}


def _plain(array: np.ndarray) -> Any:
    numbers = np.asarray(array, dtype=np.float64)
    values = numbers.astype(object)
    values[~np.isfinite(numbers)] = None
    return values.tolist()


def _number(value: Any) -> str:
    number = float(value)
    if not math.isfinite(number):
        return "n/a"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.6g}"


def _print_statistics(analysis: Analysis) -> None:
    """The per-column summary, matrices, histograms and class tables, then what was withheld."""
    title = f"Analysis {analysis.job_id}"
    summary = analysis.summary
    if summary.shape[1]:
        print_table(
            title,
            ["column", *summary.index],
            ([column, *map(_number, summary[column])] for column in summary.columns),
        )
    elif "count" in analysis:
        click.echo(f"{title}: count {_number(analysis['count'])}")
    for name in ("cov", "corr"):
        if name in analysis:
            _print_matrix(name, analysis[name])
    for name, value in analysis.items():
        if isinstance(value, HistogramCounts):
            _print_histogram(name, value)
    if "class_count" in analysis or "class_mean" in analysis:
        _print_classes(analysis)
    _print_notes(analysis.withheld, analysis.dp)


def _print_matrix(name: str, matrix: Any) -> None:
    columns = list(matrix.columns)
    if len(columns) > SHOWN_MATRIX_COLUMNS:
        click.echo(f"{name}: {len(columns)} x {len(columns)} (see it whole with --json)")
        return
    print_table(
        name,
        ["", *columns],
        ([row, *map(_number, matrix.loc[row])] for row in matrix.index),
    )


def _print_histogram(name: str, histogram: HistogramCounts) -> None:
    rows = [
        [_number(low), _number(high), _number(count)]
        for low, high, count in zip(
            histogram.edges[:-1], histogram.edges[1:], histogram.counts, strict=True
        )
    ]
    rows.append(["outside", "", _number(histogram.outside)])
    print_table(name, ["low", "high", "count"], rows)


def _print_classes(analysis: Analysis) -> None:
    """Per class: its count and, for few enough columns, its means."""
    index = next(analysis[n].index for n in ("class_count", "class_mean") if n in analysis)
    parts: dict[str, pd.Series] = {}
    if "class_count" in analysis:
        parts["count"] = analysis["class_count"]
    means = analysis.get("class_mean")
    wide = means is not None and means.shape[1] > SHOWN_MATRIX_COLUMNS
    if means is not None and not wide:
        parts.update({f"mean {column}": means[column] for column in means.columns})
    table = pd.DataFrame(parts, index=index)
    print_table(
        "Per class",
        [str(index.name or "class"), *table.columns],
        ([value, *map(_number, table.loc[value])] for value in table.index),
    )
    if means is not None and wide:
        click.echo(f"class_mean: {means.shape[0]} x {means.shape[1]} (see it whole with --json)")


def _print_notes(withheld: list[str], dp: dict[str, float] | None) -> None:
    for note in withheld:
        click.echo(f"Withheld: {note}.")
    if dp is not None:
        click.echo(
            f"Differentially private (epsilon {dp['epsilon']:g}, delta {dp['delta']:g}): "
            f"the sums carry Gaussian noise of sigma {dp['sigma']:.3g}."
        )


def _print_model(job_id: int, released: Release) -> None:
    """A model's parameters, briefly: coefficients, or classes and their counts."""
    info, tensors = released.info, released.tensors
    model, features, label = info["model"], list(info["features"]), info["label"]
    params = "".join(f", {k} {v:g}" for k, v in info.get("params", {}).items())
    click.echo(f"Analysis {job_id}: {model} of {label} on {len(features)} feature(s){params}")
    if model in REGRESSORS:
        coef = tensors["coef_"]
        rows = [[feature, _number(c)] for feature, c in zip(features, coef, strict=True)]
        _print_rows("Coefficients", ["feature", "coef_"], rows)
        click.echo(f"intercept_: {_number(tensors['intercept_'])}")
    else:
        counts = tensors.get("class_count_")
        rows = [
            [value, *([_number(counts[i])] if counts is not None else [])]
            for i, value in enumerate(info.get("classes", []))
        ]
        _print_rows("Classes", ["class", *(["class_count_"] if counts is not None else [])], rows)
    click.echo(f"In Python, net.federated_job({job_id}).result() is the fitted estimator.")


def _print_rows(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table of at most SHOWN_ROWS rows, and how many more there are."""
    print_table(title, columns, rows[:SHOWN_ROWS])
    if len(rows) > SHOWN_ROWS:
        click.echo(f"… and {len(rows) - SHOWN_ROWS} more (see them all with --json)")


# --- grid fl submit -------------------------------------------------------------------------


def _parse_model(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """`FILE.py:NAME`: a class or factory in your own Python file, called with no arguments
    on this machine (as the Python client does), which must give an `nn.Module`."""
    import importlib.util
    import sys

    from torch import nn

    path_text, _, name = value.rpartition(":")
    if not path_text or not name.isidentifier():
        raise click.BadParameter(
            f"{value!r} is not FILE.py:NAME, e.g. --model models/net.py:Net", ctx, param
        )
    path = Path(path_text)
    if not path.is_file():
        raise click.BadParameter(f"{path}: no such file", ctx, param)
    spec = importlib.util.spec_from_file_location(f"grid_user_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise click.BadParameter(f"{path} is not a Python file", ctx, param)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's own code: whatever it raises, say where
        raise click.BadParameter(f"{path} failed to load: {exc!r}", ctx, param) from None
    found = getattr(module, name, None)
    if found is None:
        raise click.BadParameter(f"{path} defines no {name!r}", ctx, param)
    if not callable(found):
        raise click.BadParameter(f"{path}:{name} is not a class or function to call", ctx, param)
    try:
        model = found()
    except Exception as exc:  # the user's own code, as above
        raise click.BadParameter(
            f"{path}:{name}() failed: {exc!r} (it is called with no arguments)", ctx, param
        ) from None
    if not isinstance(model, nn.Module):
        raise click.BadParameter(
            f"{path}:{name}() gave a {type(model).__name__}, not a torch nn.Module", ctx, param
        )
    return model


def _validation_error(exc: ValidationError) -> click.UsageError:
    """Pydantic's first complaint as one line naming the option."""
    first = exc.errors()[0]
    where = f"--{str(first['loc'][-1]).replace('_', '-')}: " if first["loc"] else ""
    return click.UsageError(where + first["msg"].removeprefix("Value error, "))


def _plan(
    loss: str,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    seed: int,
    validation_split: float,
    metrics: tuple[str, ...],
    dp: tuple[float | None, float | None, float],
) -> Any:
    """The TrainingPlan the options describe; DP-SGD with --epsilon and --delta together."""
    from grid_common.plan import DifferentialPrivacy, TrainingPlan

    epsilon, delta, max_grad_norm = dp
    if (epsilon is None) != (delta is None):
        raise click.UsageError("DP-SGD needs both --epsilon and --delta")
    try:
        return TrainingPlan(
            loss=loss,  # type: ignore[arg-type]  # a click.Choice of Loss
            optimizer=optimizer,  # type: ignore[arg-type]  # a click.Choice of Optimizer
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            validation_split=validation_split,
            metrics=list(metrics) or ["loss"],  # type: ignore[arg-type]  # Choice of Metric
            dp=None
            if epsilon is None
            else DifferentialPrivacy(
                epsilon=epsilon,
                delta=delta,  # type: ignore[arg-type]  # set with epsilon, checked above
                max_grad_norm=max_grad_norm,
            ),
        )
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _dataset_refs(client: Any, datasets: list[tuple[str, str]]) -> list[Any]:
    """Each DOMAIN:DATASET as the network lists it, so the model is checked on the first
    dataset's published columns, as `net.search(...)` hits are in Python."""
    refs = []
    for domain, dataset in datasets:
        hits = client.search(domain=domain, limit=100)
        found = [h for h in hits if h.dataset.name == dataset]
        if not found:
            names = ", ".join(sorted({h.dataset.name for h in hits})) or "none"
            raise click.ClickException(
                f"{domain} publishes no dataset {dataset!r} on this network (it has: {names}); "
                "see `grid network search`"
            )
        refs.append(found[0])
    return refs


@contextmanager
def _submit_errors(job_id: int | None = None) -> Iterator[None]:
    """A job the client refuses before sending, or a wait that ended without a model, as one
    line."""
    from grid_cli.client.federated import FederatedJobFailed

    try:
        yield
    except FederatedJobFailed as exc:
        raise click.ClickException(exc.message) from None
    except TimeoutError as exc:
        raise click.ClickException(
            f"{exc}; it goes on: follow it with `grid fl show {job_id}`"
        ) from None
    except (ValueError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from None


@fl.command("submit")
@click.option(
    "--model",
    "module",
    required=True,
    callback=_parse_model,
    metavar="FILE.py:NAME",
    help="A class or factory in your Python file giving the nn.Module; it runs here only.",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    callback=_parse_datasets,
    metavar="DOMAIN:DATASET",
    help="A dataset on a domain (its name or id); repeat, one per domain.",
)
@click.option("--loss", type=click.Choice(get_args(Loss)), required=True)
@click.option(
    "--optimizer", type=click.Choice(get_args(Optimizer)), default="sgd", show_default=True
)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate.")
@click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD's momentum.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True, help="Local epochs a round.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--validation-split", type=float, default=0.0, show_default=True)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(get_args(Metric)),
    help="Reported each round; repeat (default: loss).",
)
@click.option("--epsilon", type=float, help="DP-SGD's epsilon for the whole job (with --delta).")
@click.option("--delta", type=float, help="DP-SGD's delta (with --epsilon).")
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True, help="DP-SGD.")
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="fedavg",
    show_default=True,
)
@click.option("--mu", type=float, default=0.0, show_default=True, help="FedProx's mu.")
@click.option("--server-lr", type=float, help="The server optimizer's learning rate.")
@click.option("--server-momentum", type=float, help="FedAvgM's server momentum.")
@click.option("--beta1", type=float, help="FedAdam/FedYogi/FedAdagrad's beta1.")
@click.option("--beta2", type=float, help="FedAdam/FedYogi's beta2.")
@click.option("--tau", type=float, help="FedAdam/FedYogi/FedAdagrad's tau.")
@click.option(
    "--fraction", type=float, default=1.0, show_default=True, help="Share of domains a round."
)
@click.option("--min-sample", type=click.IntRange(min=1), help="At least this many a round.")
@click.option("--min-domains", type=click.IntRange(min=1), help="Quorum (default: every domain).")
@click.option(
    "--round-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a round waits for its domains.",
)
@click.option(
    "--secure-aggregation",
    type=click.Choice(get_args(SecureAggregation)),
    default="ckks",
    show_default=True,
    help="none sends plaintext updates: for comparison only.",
)
@click.option(
    "--bounty",
    help='Escrow a bounty ("0.05 ether", or wei) from your own key; the domains share it by '
    "contribution. Needs --wait.",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your key file (owner-only) the bounty is paid from (else $GRID_ETH_PRIVATE_KEY).",
)
@click.option("--rpc", envvar="GRID_CHAIN_RPC_URL", help="The chain (or $GRID_CHAIN_RPC_URL).")
@click.option(
    "--registry-address",
    envvar="GRID_REGISTRY_ADDRESS",
    help="The registry the bounty goes to (or $GRID_REGISTRY_ADDRESS).",
)
@submission_options("Wait for the trained model")
def fl_submit(
    module: Any,
    datasets: list[tuple[str, str]],
    loss: str,
    optimizer: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    seed: int,
    validation_split: float,
    metrics: tuple[str, ...],
    epsilon: float | None,
    delta: float | None,
    max_grad_norm: float,
    rounds: int,
    strategy: Any,
    mu: float,
    server_lr: float | None,
    server_momentum: float | None,
    beta1: float | None,
    beta2: float | None,
    tau: float | None,
    fraction: float,
    min_sample: int | None,
    min_domains: int | None,
    round_timeout: float,
    secure_aggregation: SecureAggregation,
    bounty: str | None,
    key_file: Path | None,
    rpc: str | None,
    registry_address: str | None,
    reason: str,
    wait: bool,
    timeout: float | None,
    progress: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Train your model across datasets on several domains (federated), as
    `net.federated_training(...)` does in Python.

    Every domain's owner approves first. With --bounty, your key (--key-file, else
    $GRID_ETH_PRIVATE_KEY) escrows it on the job's chain record once the job starts.
    """
    from grid_cli.client.jobs import chain_target
    from grid_common.ether import parse_wei
    from registry.bounty import scientist_account

    plan = _plan(
        loss,
        optimizer,
        lr,
        momentum,
        weight_decay,
        epochs,
        batch_size,
        seed,
        validation_split,
        metrics,
        (epsilon, delta, max_grad_norm),
    )
    with _submit_errors():
        if bounty is not None:
            if not wait:
                raise click.UsageError(
                    "a bounty is escrowed once every owner approved and the job is on chain: "
                    "drop --no-wait (or fund it later in Python: fl.fund_bounty(...))"
                )
            parse_wei(bounty)
            scientist_account(key_file)
            chain_target(rpc, registry_address, None, "the network")
        client = open_network(url)
        targets = _dataset_refs(client, datasets)
        job = client.federated_training(
            module,
            targets,
            plan,
            rounds=rounds,
            min_domains=min_domains,
            secure_aggregation=secure_aggregation,
            strategy=strategy,
            mu=mu,
            server_lr=server_lr,
            momentum=server_momentum,
            beta1=beta1,
            beta2=beta2,
            tau=tau,
            fraction=fraction,
            min_sample=min_sample,
            round_timeout=round_timeout,
            reason=reason,
            progress=progress,
            bounty=bounty,
        )
    if not wait:
        _print_training(job.info, as_json)
        return
    _say_waiting(job.info, "federated job", "job", "model")
    with _submit_errors(job.id):
        tx_hash = None
        if bounty is not None:
            try:
                tx_hash = job.fund_bounty(
                    bounty,
                    rpc,
                    registry_address=registry_address,
                    key_file=key_file,
                    timeout=math.inf if timeout is None else timeout,
                )
                click.echo(f"Bounty of {bounty} escrowed (tx {tx_hash}).", err=True)
            except TimeoutError:
                if job.info.status not in FINISHED_STATUSES:
                    raise
                # It ended with no chain record to fund: nothing was paid; wait() says how.
                click.echo(f"Job {job.id} ended unrecorded on chain: no bounty paid.", err=True)
        job.wait(timeout, progress=progress)
    _print_training(job.info, as_json, bounty_tx=tx_hash)


def _print_training(job: FederatedJobOut, as_json: bool, *, bounty_tx: str | None = None) -> None:
    if as_json:
        print_json({**job.model_dump(mode="json"), "bounty_tx": bounty_tx})
        return
    domains = ", ".join(p.domain for p in job.participants)
    if job.status != "completed":
        click.echo(
            f"Submitted federated job {job.id} ({job.status}) to {domains}; follow it with "
            f"`grid fl show {job.id}`, save its model with `grid fl download {job.id}`."
        )
        return
    click.echo(
        f"Federated job {job.id} completed on {domains}: sha256 {job.result_hash}, as every "
        f"domain attested. Save it with `grid fl download {job.id}`; check it with "
        f"`grid fl verify {job.id}`."
    )
