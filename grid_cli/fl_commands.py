"""`grid fl …`: federated jobs on a network (yours, or every one for operators)."""

from __future__ import annotations

from pathlib import Path

import click

from grid_cli.cli import json_option, main, url_option
from grid_cli.network_commands import open_network
from grid_cli.output import print_json, print_table
from grid_common.federated_schemas import FederatedJobOut, RoundList


@main.group()
def fl() -> None:
    """Federated jobs on a network signed in with `grid login NETWORK_URL`."""


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
    """Your federated jobs, newest first (every job, for operators)."""
    found = [j.info for j in open_network(url).federated_jobs()]
    if as_json:
        print_json(found)
        return
    print_table(
        "Federated jobs",
        ["id", "status", "submitter", "rounds", "domains", "aggregation", "result", "created"],
        (
            [
                j.id,
                j.status,
                j.submitter,
                _progress(j),
                ", ".join(p.domain for p in j.participants),
                j.secure_aggregation,
                j.result,
                _when(j.created_at),
            ]
            for j in found
        ),
    )


@fl.command("show")
@click.argument("job_id", type=int)
@url_option
@json_option
def fl_show(job_id: int, url: str | None, as_json: bool) -> None:
    """A federated job: its domains and their decisions, and every round's figures."""
    client = open_network(url)
    job = client.federated_job_info(job_id)
    rounds = client._get(f"/fl/jobs/{job_id}/rounds", RoundList).items
    if as_json:
        print_json({**job.model_dump(mode="json"), "round_list": rounds})
        return
    fields = {
        "status": job.status + (f" ({job.failure_reason})" if job.failure_reason else ""),
        "submitter": job.submitter,
        "rounds": _progress(job),
        "aggregation": f"{job.secure_aggregation}, {job.strategy}, quorum {job.min_domains}",
        "spec hash": job.spec_hash,
        "result": job.result + (f", sha256 {job.result_hash}" if job.result_hash else ""),
    }
    print_table(f"Federated job {job.id}", ["field", "value"], fields.items())
    print_table(
        "Domains",
        ["domain", "dataset", "decision", "rows", "rounds reported", "attested"],
        (
            [p.domain, p.dataset, p.status, p.samples, p.rounds_reported, p.attested]
            for p in job.participants
        ),
    )
    print_table(
        "Rounds",
        ["round", "status", "domains", "rows", "loss", "accuracy"],
        (
            [
                r.number,
                r.status,
                ", ".join(r.reporters),
                r.samples,
                _figure(r.metrics.get("loss")),
                _figure(r.metrics.get("accuracy")),
            ]
            for r in rounds
        ),
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
    help="Where to save the weights (default: federated-JOB_ID.safetensors).",
)
@url_option
@json_option
def fl_download(job_id: int, output: Path | None, url: str | None, as_json: bool) -> None:
    """Save a completed job's final weights (safetensors), once every domain attested them."""
    from grid_common.hashes import model_hash

    client = open_network(url)
    job = client.federated_job_info(job_id)
    if job.result != "available":
        raise click.ClickException(
            f"federated job {job_id} has no model to download yet (status {job.status}, "
            f"result {job.result}); wait for it to complete: `grid fl show {job_id}`"
        )
    path = client.download_federated_result(
        job_id, output or Path(f"federated-{job_id}.safetensors")
    )
    digest = model_hash(path)
    if digest != job.result_hash:
        raise click.ClickException(
            f"{path} hashes to {digest}, not to {job.result_hash} that the domains attested: "
            "it is not this job's model; download it again"
        )
    if as_json:
        print_json({"job": job_id, "path": str(path), "sha256": digest})
    else:
        click.echo(f"Saved {path} (sha256 {digest}, as every domain attested).")
