"""`grid results …`: release a job's result to its data scientist, download it."""

from __future__ import annotations

from pathlib import Path

import click

from grid_cli.commands.options import json_option, output_option, url_option
from grid_cli.commands.output import print_json, print_saved
from grid_cli.commands.session import fix_on, open_client
from grid_common.hashes import sha256_file


@click.group()
def results() -> None:
    """Results of jobs: release them to their data scientists, download them."""


@results.command("release")
@click.argument("job_id", type=int)
@url_option
@json_option
def results_release(job_id: int, url: str | None, as_json: bool) -> None:
    """Release a held result to the job's data scientist."""
    info = open_client(url).release(job_id)
    if as_json:
        print_json(info)
    else:
        click.echo(f"Job {job_id}: result {info.result_status}.")


@results.command("download")
@click.argument("job_id", type=int)
@output_option("the trained weights (default: job-JOB_ID.safetensors here)")
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
    print_saved(path, as_json, job=job_id, sha256=digest)
