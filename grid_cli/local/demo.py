"""`grid demo`: a whole local grid, then federated training with CKKS from search to proof."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from safetensors.torch import load_file
from torch import nn

import grid_cli as grid
from grid_cli.local.demo_data import DIGITS_LABEL, digits_split
from grid_cli.local.grid import GridConfig, LocalGrid
from grid_cli.local.processes import poll
from grid_cli.local.state import GridUpError, account_rows, node_rows
from grid_common.hashes import model_hash
from registry.chain import fund
from registry.keys import key_path, load_or_create_account
from registry.verify import Proof

# What the data scientist escrows for the domains, from a key of their own.
BOUNTY = "0.05 ether"

PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="adam",
    lr=0.005,
    epochs=1,
    batch_size=32,
    seed=0,
    metrics=["loss", "accuracy"],
)


class DemoFailed(RuntimeError):
    """A step of the demo did not come out as it should; the message says which."""


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path = Path(".grid/demo")
    domains: int = 3  # an encrypted aggregate without DP needs at least 3 domains
    rounds: int = 10


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def centralized_baseline(parts: list[pd.DataFrame], epochs: int) -> nn.Module:
    """The same model and plan trained in this process on every domain's rows pooled."""
    pooled = pd.concat(parts)
    x = torch.tensor(pooled.drop(columns=DIGITS_LABEL).to_numpy(), dtype=torch.float32)
    y = torch.tensor(pooled[DIGITS_LABEL].to_numpy())
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=PLAN.lr)
    generator = torch.Generator().manual_seed(PLAN.seed)
    # A model this small trains several times faster on one thread than on cores the
    # grid's processes are using too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=generator).split(PLAN.batch_size):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


class Demo:
    """The demo's steps, each printing what happens on `console`."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options, self.console = options, console
        self.local = LocalGrid(
            GridConfig(data_dir=options.data_dir, domains=options.domains, port=0),
            supervised=False,
        )
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"\n[bold cyan]▶ {text}[/]  [dim]({elapsed:.0f} s)[/]")

    def run(self) -> None:
        count = self.options.domains
        self.step(f"Starting a local grid: a chain with the registry, a network, {count} domains")
        # `grid down --data-dir` or a plain `kill` end the demo through the `finally` below.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.local.start(on_step=lambda s: self.console.print(f"  {s}…"))
            self.show_grid()
            fl = self.submit()
            jobs = self.approve(fl)
            self.fund_bounty(fl)
            self.train(fl)
            self.release(jobs)
            weights = self.download(fl)
            self.compare(weights)
            self.prove(fl, weights)
        finally:
            self.local.stop()
            signal.signal(signal.SIGTERM, previous)
        self.console.print(
            f"\n[bold green]Demo finished in {time.monotonic() - self.started:.0f} s; every "
            f"process has stopped.[/] Logs and the model stay in {self.local.data_dir}."
        )

    def show_grid(self) -> None:
        state = self.local.state()
        for title, columns, rows in (
            ("Local grid", ("name", "url", "what"), node_rows(state)),
            ("Accounts", ("node", "email", "role", "password"), account_rows(state)),
        ):
            table = Table(*columns, title=title, title_justify="left")
            for row in rows:
                table.add_row(*row)
            self.console.print(table)

    def submit(self) -> grid.FederatedJob:
        self.step("The data scientist searches the network for digits")
        self.scientist = self.local.scientist()
        hits = self.scientist.search("digits")
        table = Table("domain", "dataset", "rows", "tags", "score")
        for hit in hits:
            table.add_row(
                hit.domain.name,
                hit.dataset.name,
                str(hit.dataset.row_count),
                ", ".join(hit.dataset.tags),
                f"{hit.score:.3g}",
            )
        self.console.print(table)
        rounds = self.options.rounds
        self.step(f"They submit a federated job: {rounds} rounds, updates encrypted with CKKS")
        fl = self.scientist.federated_training(
            make_model(),
            datasets=hits,
            plan=PLAN,
            rounds=rounds,
            secure_aggregation="ckks",
            reason="A digit classifier trained across hospitals",
            progress=False,
        )
        domains = ", ".join(p.domain for p in fl.info.participants)
        self.console.print(f"  federated job {fl.id} on {domains}: {fl.info.status}")
        return fl

    def approve(self, fl: grid.FederatedJob) -> dict[str, int]:
        """Each owner approves the request the network filed; returns each domain's job id."""
        self.step("Each domain's owner reviews the request and approves it")
        jobs: dict[str, int] = {}
        for domain in self.local.domains:
            owner = domain.owner_client
            request = poll(
                partial(_federated_request, owner),
                f"{domain.name} to receive the federated request",
                60,
            )
            owner.approve(request.id, reason="Research use; results reviewed before release.")
            jobs[domain.name] = request.id
            self.console.print(
                f"  [bold]{domain.name} owner approves request {request.id}[/]: "
                f"{request.request_reason!r} from {request.requester}, dataset "
                f"{', '.join(request.datasets)}; the result is held for review"
            )
        return jobs

    def fund_bounty(self, fl: grid.FederatedJob) -> None:
        chain = self.local.chain
        assert chain is not None
        self.step(f"The data scientist escrows a bounty of {BOUNTY} for the domains")
        folder = self.local.data_dir / "scientist"
        address = load_or_create_account(folder, env=False).address
        fund(chain.rpc_url, [address], 1)  # a local chain: the data scientist's ether
        tx_hash = fl.fund_bounty(
            BOUNTY,
            chain.rpc_url,
            registry_address=chain.registry_address,
            key_file=key_path(folder),
        )
        self.console.print(
            f"  from {address} on the network's record of job {fl.id} (tx {tx_hash}); the "
            "domains share it by contribution once they attest the same model"
        )

    def train(self, fl: grid.FederatedJob) -> None:
        self.step("The domains train; the network adds their encrypted updates")
        rounds = self.options.rounds
        bar = Progress(
            TextColumn("  rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        shown = 0
        with bar:
            task = bar.add_task("", total=rounds, state="")
            while True:
                info = fl.refresh().info
                for record in fl.history[shown:]:
                    self.console.print("  " + _round_line(record, rounds))
                    shown += 1
                bar.update(task, completed=shown, state=info.status.replace("_", " "))
                if info.status in ("failed", "cancelled"):
                    raise DemoFailed(f"federated job {fl.id} {info.status}: {info.failure_reason}")
                if info.result in ("awaiting_release", "available") and shown == rounds:
                    break
                time.sleep(0.3)
        final = fl.info.result_hash
        self.console.print(f"  every domain decrypted the same final model: sha256 {final}")

    def release(self, jobs: dict[str, int]) -> None:
        self.step("Each owner releases the result")
        for domain in self.local.domains:
            released = domain.owner_client.release(jobs[domain.name])
            self.console.print(
                f"  [bold]{domain.name} owner releases the result of job {released.id}[/] "
                f"(model {released.result_hash})"
            )

    def download(self, fl: grid.FederatedJob) -> Path:
        self.step("The data scientist downloads the trained model")
        fl.wait(timeout=120, progress=False)
        (self.local.data_dir / "results").mkdir(exist_ok=True)
        path = fl.download_result(self.local.data_dir / "results" / "model.safetensors")
        digest = model_hash(path)
        if digest != fl.info.result_hash:
            raise DemoFailed(f"the downloaded model hashes to {digest}, not {fl.info.result_hash}")
        self.console.print(f"  {path} (sha256 {digest})")
        return path

    def compare(self, weights: Path) -> None:
        self.step("Accuracy on held-out digits that no domain holds")
        split = digits_split(self.options.domains)
        model = make_model()
        model.load_state_dict(load_file(str(weights)))
        federated = accuracy(model.eval(), split.x_test, split.y_test)
        epochs = self.options.rounds * PLAN.epochs
        baseline = accuracy(centralized_baseline(split.parts, epochs), split.x_test, split.y_test)
        table = Table("model", "trained on", "test accuracy")
        table.add_row(
            "federated, CKKS",
            f"{self.options.domains} domains, {epochs} rounds",
            f"{federated:.3f}",
        )
        table.add_row(
            "centralized baseline", f"the pooled rows, {epochs} epochs", f"{baseline:.3f}"
        )
        self.console.print(table)
        self.console.print(f"  {len(split.y_test)} test digits; label-skewed parts per domain")

    def prove(self, fl: grid.FederatedJob, weights: Path) -> None:
        chain = self.local.chain
        assert chain is not None
        self.step("The registry's proof, checked against the downloaded model")
        if fl.refresh().info.registry_job_id is None:
            raise DemoFailed(f"the network recorded federated job {fl.id} on no chain")
        # The registry is the one this demo deployed: the user's own, not a node's word.
        check = partial(fl.verify, chain.rpc_url, weights, registry_address=chain.registry_address)
        proof = _wait_for_proof(check, "the network")
        self.console.print(proof.render(), highlight=False)
        self.console.print(
            "\n  What this proves: the network recorded the federated job on chain as one job "
            "with every domain as a participant, logged each round's aggregate, every domain "
            "attested the final model's hash from its own key, and the weights you downloaded "
            "hash to what they attested. Matching attestations show that the domains agree on "
            "one model, not that the model is good."
        )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _federated_request(owner: grid.DomainClient) -> grid.Request | None:
    return next((r for r in owner.requests.pending if r.kind == "federated"), None)


def _wait_for_proof(check: Callable[[], Proof], who: str, deadline_s: float = 60) -> Proof:
    """Registry writes leave through each node's outbox: wait until they are on chain."""
    last: list[Proof] = []

    def verified() -> Proof | None:
        last[:] = [check()]
        return last[0] if last[0].ok else None

    try:
        return poll(verified, f"{who}'s records to reach the chain", deadline_s, every=0.5)
    except GridUpError:
        shown = last[0].render() if last else "no proof could be read"
        raise DemoFailed(f"{who}'s record does not verify on chain:\n{shown}") from None


def _round_line(record: dict[str, object], rounds: int) -> str:
    figures = " · ".join(
        f"{key} {record[key]:.3f}"
        for key in ("loss", "accuracy")
        if isinstance(record.get(key), int | float)
    )
    per_domain = record.get("domains")
    rows = ""
    if isinstance(per_domain, dict):
        rows = ", ".join(f"{name} {data.get('samples')} rows" for name, data in per_domain.items())
    return f"round {record['round']}/{rounds}: {figures} ({rows})"


def run_demo(options: DemoOptions | None = None, console: Console | None = None) -> None:
    Demo(options or DemoOptions(), console or Console()).run()
