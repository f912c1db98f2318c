"""`grid datasets …`: private datasets with public metadata and mock samples."""

from __future__ import annotations

from pathlib import Path

import click

from grid_cli.commands.options import json_option, output_option, url_option
from grid_cli.commands.output import field_table, print_json, print_saved, print_table, when
from grid_cli.commands.session import fix_on, open_client
from grid_common.schemas import DatasetSchema


@click.group()
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
    """Upload a CSV, Parquet, .npz or safetensors file as a private dataset, or a .zip of
    PNG/JPEG images with a labels.csv (file,<label>), stored as a uint8 (N, C, H, W) array."""
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
    field_table(
        f"Dataset {info.name}",
        {
            "description": info.description,
            "format": info.format,
            "rows": info.dataset_schema.row_count,
            "label": info.label,
            "input shape": _input_shape(info.dataset_schema),
            "tags": ", ".join(info.tags),
            "mock": "synthetic" if info.mock.synthetic else "uploaded",
            "citation": info.citation,
            "license": info.license,
            "size bytes": info.size_bytes,
            "created": when(info.created_at),
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


@datasets.command("download")
@click.argument("name")
@output_option("the private file (default: NAME.FORMAT here)")
@url_option
@json_option
def datasets_download(name: str, output: Path | None, url: str | None, as_json: bool) -> None:
    """Save a dataset's private file (owner and admin; the read is audited)."""
    client = open_client(url)
    with fix_on(404, "see the names with `grid datasets list`"):
        info = client.dataset(name).info
    path = client.download_dataset(name, output or Path(f"{info.name}.{info.format}"))
    print_saved(path, as_json, dataset=name)


def _input_shape(schema: DatasetSchema) -> str:
    """What a model is fed per row, e.g. `1x28x28 (L images)`; empty when unknown."""
    if schema.input_shape is None:
        return ""
    shape = "x".join(map(str, schema.input_shape)) or "scalar"
    return f"{shape} ({schema.image_mode} images)" if schema.image_mode else shape


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size_bytes} B"
