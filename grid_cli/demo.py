"""`grid demo`: a local domain with a sample dataset, walked through the data-owner flow."""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits

import grid_cli as grid
from grid_cli.launch import DomainLaunch

OWNER_EMAIL = "owner@hospital-a.example"
SCIENTIST_EMAIL = "ds@university.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the domain exited early; its log:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"the domain did not answer {url}/healthz within 60 s")


@contextmanager
def running_domain(data_dir: Path, owner_password: str) -> Iterator[str]:
    """A domain under gunicorn on a free loopback port, stopped when the block ends."""
    launch = DomainLaunch(name="hospital-a", port=_free_port(), data_dir=data_dir, workers=1)
    env = launch.environment()
    env |= {"GRID_OWNER_EMAIL": OWNER_EMAIL, "GRID_OWNER_PASSWORD": owner_password}
    env.pop("GRID_DATABASE_URL", None)  # the demo keeps its own SQLite file
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "domain.log"
    with log.open("wb") as out:
        process = subprocess.Popen(launch.gunicorn_command(), env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{launch.port}"
    try:
        _wait_until_up(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def write_digits_sample(path: Path) -> int:
    """Half of scikit-learn's digits as a CSV: 64 pixel columns and a `target` label."""
    digits = load_digits()
    half = len(digits.target) // 2
    frame = pd.DataFrame(digits.data[:half].astype(int), columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target[:half]
    frame.to_csv(path, index=False)
    return half


def run_demo(console: Console | None = None) -> None:
    console = console or Console()

    def step(text: str) -> None:
        console.print(f"\n[bold cyan]▶ {text}[/]")

    with tempfile.TemporaryDirectory(prefix="grid-demo-") as scratch:
        root = Path(scratch)
        owner_password, ds_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        step("Starting a domain node (gunicorn, SQLite in a temporary data dir)")
        with running_domain(root / "hospital-a", owner_password) as url:
            console.print(
                f"  domain 'hospital-a' at {url}; owner {OWNER_EMAIL} from the environment"
            )

            step("The owner signs in and uploads a private dataset")
            owner = grid.login(url, OWNER_EMAIL, owner_password)
            rows = write_digits_sample(root / "digits_a.csv")
            dataset = owner.upload_dataset(
                "digits-a",
                root / "digits_a.csv",
                label="target",
                description="Handwritten digits, 8x8 pixels, first half of scikit-learn's digits.",
                tags=["digits", "images"],
                progress=False,
            )
            console.print(
                f"  uploaded {rows} rows; schema: {len(dataset.schema.columns)} columns, "
                f"label 'target'; mock: synthetic={dataset.info.mock.synthetic}"
            )

            step("The owner creates a data scientist's account")
            owner.create_user(SCIENTIST_EMAIL, ds_password, role="data_scientist")
            console.print(f"  {SCIENTIST_EMAIL} (data_scientist)")

            step("The data scientist browses datasets and looks at the mock sample")
            ds = grid.login(url, SCIENTIST_EMAIL, ds_password)
            table = Table("name", "rows", "tags", "description")
            for item in ds.datasets:
                table.add_row(
                    item.name, str(item.row_count), ", ".join(item.tags), item.description
                )
            console.print(table)
            mock = ds.datasets["digits-a"].mock
            assert isinstance(mock, pd.DataFrame)  # a table dataset's mock is a DataFrame
            console.print(f"  mock sample: {len(mock)} synthetic rows, never private ones")
            console.print(mock.iloc[:3, [*range(6), -1]].to_string())

            step("The data scientist tries to read the private rows")
            try:
                ds.http.request("GET", "/api/v1/datasets/digits-a/data")
            except grid.GridError as exc:
                console.print(f"  refused: {exc}")

            step("The data scientist asks for access")
            request = ds.request_access("digits-a", reason="Train a digit classifier for triage.")
            console.print(f"  request #{request.id}: {request.status}")

            step("The owner reviews pending requests and approves")
            for pending in owner.requests.pending:
                console.print(f"  #{pending.id} from {pending.requester}: {pending.request_reason}")
            owner.approve(request.id, reason="Research use; results reviewed before release.")
            request.refresh()
            console.print(f"  the data scientist now sees: {request.status} — {request.reason}")

            step("The owner verifies the audit log's hash chain")
            report = owner.verify_audit()
            console.print(f"  {report.entries} entries, chain intact: {report.ok}")
            if not report.ok:
                raise SystemExit("audit chain broken")
        console.print("\n[bold green]Demo finished; the domain has stopped.[/]")
