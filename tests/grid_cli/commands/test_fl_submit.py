"""`grid fl submit` against a stand-in network: the model from the user's own file, the
options as `NetworkClient.federated_training` takes them, and bad input as one line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from flask.testing import FlaskClient
from torch import nn

import grid_cli.commands.fl
from grid_cli.client.federated import FederatedJobFailed
from grid_common.federated_schemas import FederatedJobOut
from grid_common.plan import DifferentialPrivacy, TrainingPlan
from registry.keys import KEY_ENV
from tests.grid_cli.commands.test_fl import job_out
from tests.grid_cli.commands.test_network import one_line_error, table_lines
from tests.grid_cli.commands.test_session import failed, ok_json
from tests.grid_cli.conftest import RunGrid
from tests.network.conftest import LiveNode, Signer, approved, dataset
from tests.network.test_federated import PASSWORD, account

MODEL_FILE = """
from torch import nn


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(64, 10))


def factory():
    return Net()


def not_a_module():
    return 42


def needs_arguments(width):
    return nn.Linear(width, 10)


WIDTH = 64


def small():
    return nn.Linear(2, 3)
"""
TWO_DOMAINS = ("--dataset", "hospital-a:digits", "--dataset", "hospital-b:digits")


@dataclass
class StubJob:
    """A FederatedJob that completes at once; it records the bounty it was asked to fund."""

    info: FederatedJobOut
    funded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.info.id

    def fund_bounty(self, amount: str, rpc_url: str | None, **options: Any) -> str:
        self.funded.append({"amount": amount, "rpc_url": rpc_url, **options})
        return "0x" + "ab" * 32

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> StubJob:
        self.info = job_out("training", status="completed")
        return self


@dataclass
class StubNetwork:
    """The NetworkClient calls `grid fl submit` makes: search, and federated_training."""

    submitted: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[StubJob] = field(default_factory=list)

    def search(self, *, domain: str, limit: int) -> list[Any]:
        return [SimpleNamespace(domain=domain, dataset=SimpleNamespace(name="digits"))]

    def federated_training(
        self, model: nn.Module, datasets: list[Any], plan: TrainingPlan, **options: Any
    ) -> StubJob:
        self.submitted.append({"model": model, "datasets": datasets, "plan": plan, **options})
        self.jobs.append(StubJob(job_out("training", status="pending_approval")))
        return self.jobs[-1]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubNetwork:
    stub = StubNetwork()
    monkeypatch.setattr(grid_cli.commands.fl, "open_network", lambda url: stub)
    return stub


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(MODEL_FILE)
    return path


def test_submit_sends_what_the_options_say(
    run_grid: RunGrid, stub: StubNetwork, model_file: Path
) -> None:
    shown = ok_json(
        run_grid(
            "fl", "submit", "--model", f"{model_file}:factory", *TWO_DOMAINS,
            "--loss", "cross_entropy", "--optimizer", "adam", "--lr", "0.005", "--epochs", "2",
            "--batch-size", "16", "--metric", "loss", "--metric", "accuracy",
            "--epsilon", "4", "--delta", "1e-5", "--rounds", "3", "--strategy", "fedavgm",
            "--server-lr", "0.5", "--server-momentum", "0.9", "--fraction", "0.5",
            "--min-sample", "2", "--secure-aggregation", "none", "--reason", "digits",
            "--no-wait", "--json",
        )
    )  # fmt: skip
    assert (shown["id"], shown["kind"], shown["status"]) == (7, "training", "pending_approval")
    [sent] = stub.submitted
    assert isinstance(sent.pop("model"), nn.Sequential)
    assert [(d.domain, d.dataset.name) for d in sent.pop("datasets")] == [
        ("hospital-a", "digits"),
        ("hospital-b", "digits"),
    ]
    assert sent.pop("plan") == TrainingPlan(
        loss="cross_entropy",
        optimizer="adam",
        lr=0.005,
        epochs=2,
        batch_size=16,
        metrics=["loss", "accuracy"],
        dp=DifferentialPrivacy(epsilon=4, delta=1e-5),
    )
    assert sent == {
        "rounds": 3,
        "min_domains": None,
        "secure_aggregation": "none",
        "strategy": "fedavgm",
        "mu": 0.0,
        "server_lr": 0.5,
        "momentum": 0.9,
        "beta1": None,
        "beta2": None,
        "tau": None,
        "fraction": 0.5,
        "min_sample": 2,
        "round_timeout": 300.0,
        "reason": "digits",
        "progress": None,
        "bounty": None,
    }


def test_a_bounty_is_escrowed_from_your_key_before_waiting(
    run_grid: RunGrid, stub: StubNetwork, model_file: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(Account.create().key.hex())
    key_file.chmod(0o600)
    done = run_grid(
        "fl", "submit", "--model", f"{model_file}:Net", *TWO_DOMAINS, "--loss", "mse",
        "--bounty", "0.05 ether", "--key-file", str(key_file), "--rpc", "http://127.0.0.1:9",
        "--registry-address", "0x" + "11" * 20, "--no-progress",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert stub.submitted[0]["bounty"] == "0.05 ether"
    [funded] = stub.jobs[0].funded
    assert funded == {
        "amount": "0.05 ether",
        "rpc_url": "http://127.0.0.1:9",
        "registry_address": "0x" + "11" * 20,
        "key_file": key_file,
        "timeout": float("inf"),
    }
    assert "Bounty of 0.05 ether escrowed (tx 0xabab" in done.stderr
    assert "Federated job 7 completed on hospital-a, hospital-b: sha256 bbbb" in done.stdout


@pytest.mark.parametrize(
    ("model", "extra", "expected"),
    [
        ("{file}", (), "is not FILE.py:NAME, e.g. --model models/net.py:Net"),
        ("{file}:1x", (), "is not FILE.py:NAME"),
        ("{dir}/missing.py:Net", (), "missing.py: no such file"),
        ("{file}:Nett", (), "defines no 'Nett'"),
        ("{file}:WIDTH", (), "WIDTH is not a class or function to call"),
        ("{file}:not_a_module", (), "not_a_module() gave a int, not a torch nn.Module"),
        ("{file}:needs_arguments", (), "it is called with no arguments"),
        ("{file}:Net", ("--dataset", "digits"), "'digits' is not DOMAIN:DATASET"),
        ("{file}:Net", ("--epsilon", "1"), "DP-SGD needs both --epsilon and --delta"),
        ("{file}:Net", ("--lr", "0"), "--lr: Input should be greater than 0"),
        ("{file}:Net", ("--bounty", "1 ether", "--no-wait"), "drop --no-wait"),
        ("{file}:Net", ("--bounty", "lots"), "lots"),
        ("{file}:Net", ("--strategy", "fedsgd"), "'fedsgd' is not one of 'fedavg'"),
    ],
)
def test_bad_submit_arguments_are_one_line_and_send_nothing(
    run_grid: RunGrid,
    stub: StubNetwork,
    model_file: Path,
    model: str,
    extra: tuple[str, ...],
    expected: str,
) -> None:
    given = model.format(file=model_file, dir=model_file.parent)
    message = failed(
        run_grid("fl", "submit", "--model", given, *TWO_DOMAINS, "--loss", "mse", *extra)
    )
    assert expected in message, message
    assert stub.submitted == []


def test_a_bounty_needs_your_key(
    run_grid: RunGrid, stub: StubNetwork, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "")
    message = failed(
        run_grid(
            "fl",
            "submit",
            "--model",
            f"{model_file}:Net",
            *TWO_DOMAINS,
            "--loss",
            "mse",
            "--bounty",
            "1 ether",
        )
    )
    assert KEY_ENV in message and stub.submitted == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scientist_submits_a_federated_job_from_the_shell(
    run: Any,
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    twin_network: LiveNode,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real submission: the model exported from the user's file, checked against the
    published columns, and the job the network recorded as the options said."""
    monkeypatch.setenv("COLUMNS", "200")
    names = ("hospital-a", "clinic-b", "lab-c")
    for name in names:
        signer = make_signer()
        approved(signer, network, operator, name=name)
        assert signer.push([dataset("records", label="target")]).status_code == 200
    account(network, operator, "scientist@example.org")
    ok_json(run("login", twin_network.url, "--email", "scientist@example.org",
                "--password-stdin", "--json", input=PASSWORD))  # fmt: skip
    targets = [f for name in names for f in ("--dataset", f"{name}:records")]
    missing = one_line_error(run("fl", "submit", "--model", f"{model_file}:small", *targets,
                         "--dataset", "hospital-a:scans", "--loss", "cross_entropy"))  # fmt: skip
    assert "hospital-a publishes no dataset 'scans'" in missing and "records" in missing
    submitted = ok_json(
        run("fl", "submit", "--model", f"{model_file}:small", *targets, "--loss",
            "cross_entropy", "--rounds", "4", "--strategy", "fedprox", "--mu", "0.1",
            "--no-wait", "--json")
    )  # fmt: skip
    assert (submitted["kind"], submitted["status"], submitted["rounds"]) == (
        "training", "pending_approval", 4,
    )  # fmt: skip
    assert [p["domain"] for p in submitted["participants"]] == list(names)
    shown = table_lines(run("fl", "show", str(submitted["id"])))
    assert "strategy │ fedprox (mu 0.1)" in shown, shown


def test_a_job_that_ends_before_its_bounty_is_escrowed_says_why(
    run_grid: RunGrid,
    stub: StubNetwork,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ended(self: StubJob, amount: str, rpc_url: str | None, **options: Any) -> str:
        self.info = job_out("training", status="failed", failure_reason="a domain denied it")
        raise TimeoutError("federated job 7 has no chain record to fund yet")

    def failing_wait(self: StubJob, timeout: float | None = None, **options: Any) -> StubJob:
        raise FederatedJobFailed(0, "job_failed", "federated job 7: a domain denied it")

    monkeypatch.setattr(StubJob, "fund_bounty", ended)
    monkeypatch.setattr(StubJob, "wait", failing_wait)
    monkeypatch.setenv(KEY_ENV, Account.create().key.hex())
    done = run_grid("fl", "submit", "--model", f"{model_file}:Net", *TWO_DOMAINS, "--loss",
                    "mse", "--bounty", "1 ether", "--rpc", "http://127.0.0.1:9",
                    "--registry-address", "0x" + "11" * 20)  # fmt: skip
    assert done.exit_code == 1
    assert "ended unrecorded on chain: no bounty paid" in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("federated job 7: a domain denied it")
