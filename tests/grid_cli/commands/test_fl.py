"""`grid fl analyze|list|show` against a stand-in network: argument checks, and how jobs and
released analyses print. The live network's side is in tests/grid_cli/commands/test_network.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import Result

import grid_cli.commands.fl
from grid_cli.client.federated import FederatedJobFailed
from grid_common.analytics.compute import Release, local_sums, release
from grid_common.analytics.plan import AnalysisPlan, AnalyticsDp, AnalyticsError
from grid_common.federated_schemas import FederatedJobOut, ParticipantOut, RoundList, RoundOut
from registry.errors import RegistryError
from tests.grid_cli.commands.test_session import failed, ok_json
from tests.grid_cli.conftest import RunGrid

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
DOMAINS = ("hospital-a", "hospital-b")
FEATURES = [f"p{i}" for i in range(64)]
TWO_DOMAINS = ("--dataset", "hospital-a:digits", "--dataset", "hospital-b:digits")


def rows() -> pd.DataFrame:
    """40 rows: classes 0, 1 and 2 of 14, 13 and 11 rows, and class 3 of 2 rows."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"p1": np.arange(40) % 16, "p2": rng.normal(size=40)})
    frame["target"] = [3] * 2 + [0] * 14 + [1] * 13 + [2] * 11
    return frame


# Class 3 is under the minimum group size of 5; class 2, the next smallest, goes with it, or
# the count less the others would give class 3 away.
WITHHELD_CLASSES = "classes [2, 3]: fewer than 5 rows (or withheld with one that is)"


def released(min_group_size: int = 5, **plan: Any) -> Release:
    """What the domains would release for `plan` over `rows()`."""
    resolved = AnalysisPlan(**{"features": ["p1", "p2"], "label": "target", **plan})
    total, _ = local_sums(rows(), resolved)
    return release(resolved, total, min_group_size=min_group_size)


def job_out(
    kind: str = "analytics", plan: dict[str, Any] | None = None, **fields: Any
) -> FederatedJobOut:
    """A job as the network shows it, on two domains that approved."""
    participants = [
        ParticipantOut(
            domain_id=f"id-{name}",
            domain=name,
            dataset="digits",
            status="approved",
            decision_reason=None,
            decided_at=NOW,
            samples=20,
            rounds_reported=1,
            attested=True,
        )
        for name in DOMAINS
    ]
    values: dict[str, Any] = {
        "id": 7,
        "kind": kind,
        "status": "completed",
        "submitter": "ds@lab.example",
        "plan": plan or {},
        "rounds": 1,
        "strategy": "fedavg",
        "mu": 0.0,
        "min_domains": 2,
        "round_timeout": 300.0,
        "secure_aggregation": "ckks",
        "reason": "",
        "current_round": 1,
        "participants": participants,
        "parameters": 10,
        "created_at": NOW,
        "started_at": NOW,
        "finished_at": NOW,
        "failure_reason": None,
        "spec_hash": "a" * 64,
        "result": "available",
        "result_hash": "b" * 64,
        "last_round": closed_round(),
    }
    return FederatedJobOut.model_validate({**values, **fields})


def closed_round(number: int = 1, **metrics: float) -> RoundOut:
    return RoundOut(
        number=number,
        status="closed",
        opened_at=NOW,
        deadline=NOW,
        closed_at=NOW,
        reporters=list(DOMAINS),
        samples=40,
        metrics=metrics,
        aggregate_hash="c" * 64,
    )


def table_lines(result: Result) -> list[str]:
    """Stdout's lines, table rows as `cell │ cell` with the borders and padding gone."""
    assert result.exit_code == 0, result.output
    rows = (line.replace("┃", "│").strip("│ ") for line in result.stdout.splitlines())
    return [" ".join(row.split()) for row in rows]


@dataclass
class StubJob:
    """An AnalyticsJob that is done at once, or fails or times out as the test asks."""

    info: FederatedJobOut
    result: Release | None
    error: Exception | None = None

    @property
    def id(self) -> int:
        return self.info.id

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> StubJob:
        if self.error is not None:
            raise self.error
        return self

    def release(self) -> Release:
        assert self.result is not None
        return self.result


@dataclass
class StubProof:
    """A registry proof whose checks passed or not."""

    ok: bool

    def render(self) -> str:
        return "Job 0x07\n  participants (2)  " + ("all attested" if self.ok else "lab-b did not")

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok}


@dataclass
class StubProvable:
    """A FederatedJob that proves itself with `proof`, or fails with `error`."""

    proof: StubProof
    error: Exception | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)

    def verify(self, rpc: str | None, model: Any, **options: Any) -> StubProof:
        self.asked.append({"rpc": rpc, "model": model, **options})
        if self.error is not None:
            raise self.error
        return self.proof


@dataclass
class StubNetwork:
    """The NetworkClient calls `grid fl` makes, answered from what the test set up."""

    jobs: list[FederatedJobOut] = field(default_factory=list)
    rounds: list[RoundOut] = field(default_factory=list)
    result: Release | None = None
    wait_error: Exception | None = None
    submit_error: Exception | None = None
    submitted: list[dict[str, Any]] = field(default_factory=list)
    provable: StubProvable = field(default_factory=lambda: StubProvable(StubProof(ok=True)))

    def submit_analysis(self, datasets: list[tuple[str, str]], **options: Any) -> StubJob:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append({"datasets": datasets, **options})
        return StubJob(job_out(status="pending_approval"), self.result, self.wait_error)

    def federated_jobs(self) -> list[StubJob]:
        return [StubJob(info, None) for info in self.jobs]

    def federated_job(self, job_id: int) -> StubProvable:
        return self.provable

    def federated_job_info(self, job_id: int) -> FederatedJobOut:
        return next(job for job in self.jobs if job.id == job_id)

    def _get(self, path: str, model: type[RoundList]) -> RoundList:
        return RoundList(items=self.rounds)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> StubNetwork:
    """`grid fl` talks to this stand-in instead of a signed-in network; tables print wide."""
    stub = StubNetwork()
    monkeypatch.setattr(grid_cli.commands.fl, "open_network", lambda url: stub)
    monkeypatch.setenv("COLUMNS", "200")
    return stub


# --- grid fl analyze: what it sends -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--stat", "median"), "unknown statistic 'median': choose from count, sum"),
        (("--stat", "hist:p1:0:16"), "write it as hist:COLUMN:LOW:HIGH:BINS"),
        (("--stat", "hist:p1:9:1:4"), "LOW must be below HIGH"),
        (("--stat", "count", "--bounds", "p1"), "'p1' is not COLUMN=LOW:HIGH"),
        (("--stat", "count", "--bounds", "p1=0:x"), "e.g. --bounds age=0:120"),
        (("--stat", "count", "--bounds", "p1=5:1"), "with finite LOW < HIGH"),
        (("--stat", "count", "--bounds", "=0:1"), "'=0:1' is not COLUMN=LOW:HIGH"),
        (("--stat", "count", "--bounds", "p1=0:1"), "pass --epsilon and --delta too"),
        (("--stat", "count", "--epsilon", "1"), "needs both --epsilon and --delta"),
        (("--stat", "count", "--epsilon", "0", "--delta", "1e-5"), "--epsilon: Input should be"),
        (("--stat", "count", "--model", "ridge"), "pass --stat (repeatable) or --model, not both"),
        ((), "nothing to compute: pass --stat NAME"),
        (("--model", "ols", "--alpha", "2"), "--alpha is ridge's: pass it with --model ridge"),
        (("--model", "lasso"), "'lasso' is not one of 'gaussian_nb', 'nearest_centroid'"),
        (("--model", "ridge", "--var-smoothing", "1"), "pass it with --model gaussian_nb"),
        (("--stat", "count", "--min-domains", "0"), "0 is not in the range x>=1"),
    ],
)
def test_bad_analyze_arguments_are_one_line_and_send_nothing(
    run_grid: RunGrid, network: StubNetwork, args: tuple[str, ...], expected: str
) -> None:
    message = failed(run_grid("fl", "analyze", *TWO_DOMAINS, *args))
    assert expected in message, message
    assert "fl analyze --help" in message
    assert network.submitted == []


@pytest.mark.parametrize("dataset", ["digits", "hospital-a:", ":digits"])
def test_a_dataset_names_its_domain(run_grid: RunGrid, network: StubNetwork, dataset: str) -> None:
    message = failed(run_grid("fl", "analyze", "--dataset", dataset, "--stat", "count"))
    assert f"{dataset!r} is not DOMAIN:DATASET" in message and "hospital-a:digits" in message
    assert network.submitted == []
    assert "Missing option '--dataset'" in failed(run_grid("fl", "analyze", "--stat", "count"))


def test_analyze_sends_what_the_options_say(run_grid: RunGrid, network: StubNetwork) -> None:
    shown = ok_json(
        run_grid(
            "fl", "analyze", *TWO_DOMAINS, "--stat", "mean", "--stat", "hist:p1:0:16:4",
            "--column", "p1", "--column", "p2", "--label", "target", "--min-domains", "1",
            "--epsilon", "1.5", "--delta", "1e-6", "--bounds", "p1=0:16", "--bounds", "p2=-4:4",
            "--secure-aggregation", "none", "--reason", "how tall", "--no-wait", "--json",
        )
    )  # fmt: skip
    assert (shown["id"], shown["kind"], shown["status"]) == (7, "analytics", "pending_approval")
    assert network.submitted == [
        {
            "datasets": [("hospital-a", "digits"), ("hospital-b", "digits")],
            "statistics": ["mean", "hist:p1:0:16:4"],
            "model": None,
            "columns": ["p1", "p2"],
            "label": "target",
            "dp": AnalyticsDp(epsilon=1.5, delta=1e-6, bounds={"p1": (0, 16), "p2": (-4, 4)}),
            "min_domains": 1,
            "round_timeout": 300.0,
            "secure_aggregation": "none",
            "reason": "how tall",
        }
    ]
    told = run_grid("fl", "analyze", *TWO_DOMAINS, "--model", "ridge", "--alpha", "0.5",
                    "--label", "target", "--no-wait")  # fmt: skip
    assert told.exit_code == 0, told.output
    assert "Submitted analysis 7 (pending_approval) to hospital-a, hospital-b" in told.stdout
    assert "grid fl show 7" in told.stdout and "grid fl download 7" in told.stdout
    sent = network.submitted[-1]
    assert (sent["model"], sent["alpha"], sent["statistics"], sent["columns"]) == (
        "ridge", 0.5, [], None,
    )  # fmt: skip


# --- grid fl analyze: what it prints ------------------------------------------------------------


SUBMITTED = (
    "Submitted analysis 7 to hospital-a, hospital-b; waiting for their owners' approval and "
    "the result (Ctrl-C stops waiting, not the analysis: `grid fl show 7`)."
)
STATISTICS = ["count", "mean", "std", "corr", "hist:p1:0:16:4", "class_count", "class_mean"]


def test_statistics_print_as_tables_with_what_was_withheld(
    run_grid: RunGrid, network: StubNetwork
) -> None:
    network.result = released(statistics=STATISTICS, classes=[0, 1, 2, 3])
    stats = [arg for name in STATISTICS for arg in ("--stat", name)]
    result = run_grid("fl", "analyze", *TWO_DOMAINS, *stats, "--label", "target")
    assert result.exit_code == 0, result.output
    assert result.stderr == SUBMITTED + "\n"
    lines = table_lines(result)
    frame = rows()
    assert "column │ count │ mean │ std" in lines
    assert f"p1 │ 40 │ {frame.p1.mean():.6g} │ {frame.p1.std():.6g}" in lines
    assert f"p2 │ 40 │ {frame.p2.mean():.6g} │ {frame.p2.std():.6g}" in lines
    assert f"p1 │ 1 │ {frame.p1.corr(frame.p2):.6g}" in lines
    assert "hist:p1:0:16:4" in lines
    counts = np.histogram(frame.p1, bins=4, range=(0, 16))[0]
    assert [f"{4 * i} │ {4 * i + 4} │ {n}" for i, n in enumerate(counts)] == [
        line for line in lines if line[:1].isdigit() and line.count("│") == 2
    ]
    assert "outside │ │ 0" in lines
    assert "target │ count │ mean p1 │ mean p2" in lines
    assert "2 │ n/a │ n/a │ n/a" in lines and "3 │ n/a │ n/a │ n/a" in lines
    shown_class = frame[frame.target == 0]
    assert f"0 │ 14 │ {shown_class.p1.mean():.6g} │ {shown_class.p2.mean():.6g}" in lines
    assert f"Withheld: {WITHHELD_CLASSES}." in lines


def test_statistics_as_json_are_lists_with_null_where_withheld(
    run_grid: RunGrid, network: StubNetwork
) -> None:
    network.result = released(statistics=STATISTICS, classes=[0, 1, 2, 3])
    stats = [arg for name in STATISTICS for arg in ("--stat", name)]
    shown = ok_json(run_grid("fl", "analyze", *TWO_DOMAINS, *stats, "--label", "target", "--json"))
    frame = rows()
    assert (shown["job"], shown["kind"], shown["features"]) == (7, "statistics", ["p1", "p2"])
    assert shown["withheld"] == [WITHHELD_CLASSES]
    values = shown["values"]
    assert values["count"] == 40
    assert values["mean"] == pytest.approx(list(frame[["p1", "p2"]].mean()))
    assert values["class_count"] == [14, 13, None, None]
    assert values["class_mean"][2:] == [[None, None], [None, None]]
    assert values["hist:p1:0:16:4/edges"] == [0, 4, 8, 12, 16]
    assert values["hist:p1:0:16:4/outside"] == [0]
    assert "NaN" not in json.dumps(shown)


def test_a_private_analysis_says_how_much_noise_it_carries(
    run_grid: RunGrid, network: StubNetwork
) -> None:
    dp = AnalyticsDp(epsilon=1, delta=1e-5, bounds={"p1": (0, 16), "p2": (-4, 4)})
    plan = AnalysisPlan(statistics=["count", "mean"], features=["p1", "p2"], dp=dp)
    network.result = release(plan, local_sums(rows(), plan)[0], min_group_size=5, noise_sigma=0.5)
    lines = table_lines(
        run_grid("fl", "analyze", *TWO_DOMAINS, "--stat", "count", "--stat", "mean")
    )
    assert lines[-1] == (
        "Differentially private (epsilon 1, delta 1e-05): the sums carry Gaussian noise of "
        "sigma 0.5."
    )
    shown = ok_json(run_grid("fl", "analyze", *TWO_DOMAINS, "--stat", "count", "--json"))
    assert shown["dp"] == {"epsilon": 1, "delta": 1e-5, "sigma": 0.5}


def test_a_count_alone_prints_one_line(run_grid: RunGrid, network: StubNetwork) -> None:
    network.result = released(statistics=["count"], features=[], label=None)
    result = run_grid("fl", "analyze", *TWO_DOMAINS, "--stat", "count")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Analysis 7: count 40\n"


def test_a_regression_prints_its_coefficients(run_grid: RunGrid, network: StubNetwork) -> None:
    network.result = released(model="ridge", alpha=0.5)
    result = run_grid("fl", "analyze", *TWO_DOMAINS, "--model", "ridge", "--label", "target")
    assert result.exit_code == 0, result.output
    coef = network.result.tensors["coef_"]
    intercept = float(network.result.tensors["intercept_"])
    text = " ".join(result.stdout.split())
    assert "Analysis 7: ridge of target on 2 feature(s), alpha 0.5" in text
    assert f"p1 │ {coef[0]:.6g}" in text and f"p2 │ {coef[1]:.6g}" in text
    assert f"intercept_: {intercept:.6g}" in text
    assert "net.federated_job(7).result()" in text
    shown = ok_json(run_grid("fl", "analyze", *TWO_DOMAINS, "--model", "ridge", "--json"))
    assert shown["values"] == {"coef_": pytest.approx(list(coef)), "intercept_": intercept}


def test_a_classifier_prints_its_classes_and_their_counts(
    run_grid: RunGrid, network: StubNetwork
) -> None:
    network.result = released(model="gaussian_nb", classes=[0, 1, 2, 3], min_group_size=2)
    result = run_grid("fl", "analyze", *TWO_DOMAINS, "--model", "gaussian_nb", "--label", "target")
    assert result.exit_code == 0, result.output
    lines = table_lines(result)
    assert "Analysis 7: gaussian_nb of target on 2 feature(s), var_smoothing 1e-09" in lines
    assert "class │ class_count_" in lines
    assert [line for line in lines if "│" in line][1:] == ["0 │ 14", "1 │ 13", "2 │ 11", "3 │ 2"]


def test_many_coefficients_are_cut_short(run_grid: RunGrid, network: StubNetwork) -> None:
    wide = rows().assign(**{name: np.arange(40) * (i + 1) % 7 for i, name in enumerate(FEATURES)})
    plan = AnalysisPlan(model="ols", features=FEATURES, label="target")
    network.result = release(plan, local_sums(wide, plan)[0], min_group_size=5)
    lines = table_lines(run_grid("fl", "analyze", *TWO_DOMAINS, "--model", "ols"))
    assert [line.split(" │ ")[0] for line in lines if "│" in line] == ["feature", *FEATURES[:20]]
    assert "… and 44 more (see them all with --json)" in lines


@pytest.mark.parametrize(
    ("where", "error", "expected"),
    [
        ("submit", AnalyticsError("name one dataset per domain"), "name one dataset per domain"),
        (
            "wait",
            FederatedJobFailed(0, "job_failed", "federated job 7: nothing may be released"),
            "federated job 7: nothing may be released",
        ),
        (
            "wait",
            TimeoutError("federated job 7 is still pending_approval"),
            "still pending_approval; it goes on: follow it with `grid fl show 7`",
        ),
    ],
)
def test_an_analysis_that_fails_says_why_in_one_line(
    run_grid: RunGrid, network: StubNetwork, where: str, error: Exception, expected: str
) -> None:
    setattr(network, f"{where}_error", error)
    result = run_grid("fl", "analyze", *TWO_DOMAINS, "--stat", "count", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout == ""
    *notes, message = result.stderr.strip().splitlines()
    assert expected in message, message
    # Past submitting, one note first says which job it was.
    assert notes == ([] if where == "submit" else [SUBMITTED])


# --- grid fl list | show ----------------------------------------------------------------------


ANALYSIS_PLAN = AnalysisPlan(
    statistics=["count", "mean", "class_count"],
    features=FEATURES,
    label="target",
    classes=list(range(10)),
    dp=AnalyticsDp(epsilon=2, delta=1e-5, bounds={f: (0, 16) for f in FEATURES}),
).model_dump(mode="json")


def test_list_tells_analyses_from_training(run_grid: RunGrid, network: StubNetwork) -> None:
    network.jobs = [
        job_out(plan=ANALYSIS_PLAN, id=8, status="running", last_round=None),
        job_out("training", {"loss": "mse"}, rounds=5, last_round=closed_round(3)),
    ]
    result = run_grid("fl", "list")
    assert result.exit_code == 0, result.output
    lines = table_lines(result)
    assert any(line.startswith("id │ kind │ status │ submitter │ rounds") for line in lines)
    assert any(
        line.startswith("8 │ analytics │ running │ ds@lab.example │ 0/1 │") for line in lines
    )
    assert any(
        line.startswith("7 │ training │ completed │ ds@lab.example │ 3/5 │") for line in lines
    )
    assert [job["kind"] for job in ok_json(run_grid("fl", "list", "--json"))] == [
        "analytics",
        "training",
    ]


def test_show_says_what_an_analysis_computes(run_grid: RunGrid, network: StubNetwork) -> None:
    network.jobs = [job_out(plan=ANALYSIS_PLAN)]
    network.rounds = [closed_round()]
    result = run_grid("fl", "show", "7")
    assert result.exit_code == 0, result.output
    lines = table_lines(result)
    assert "Analysis 7" in lines
    assert "kind │ analytics" in lines and "rounds │ 1/1" in lines
    assert "computes │ statistics count, mean, class_count" in lines
    assert "features │ 64: p0, p1, p2, p3, p4, p5, …, p63" in lines
    assert "label │ target" in lines
    assert "classes │ 10: 0, 1, 2, 3, 4, 5, …, 9" in lines
    assert "privacy │ differential privacy: epsilon 2, delta 1e-05, bounds on 64 column(s)" in lines
    assert "aggregation │ ckks, quorum 2" in lines
    assert "round │ status │ domains │ rows" in lines  # no loss or accuracy for an analysis
    assert "1 │ closed │ hospital-a, hospital-b │ 40" in lines
    assert "loss" not in result.stdout and "fedavg" not in result.stdout
    assert ok_json(run_grid("fl", "show", "7", "--json"))["plan"] == ANALYSIS_PLAN


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"model": "ridge", "alpha": 0.5}, "computes │ model ridge (alpha 0.5)"),
        ({"model": "ols"}, "computes │ model ols"),
        ({"model": "gaussian_nb", "classes": [0, 1]}, "classes │ 2: 0, 1"),
        ({"model": "ols"}, "privacy │ exact sums; the owners' minimum group sizes apply"),
    ],
)
def test_show_names_an_analysis_model(
    run_grid: RunGrid, network: StubNetwork, plan: dict[str, Any], expected: str
) -> None:
    resolved = AnalysisPlan(**{"features": ["p1", "p2"], "label": "target", **plan})
    network.jobs = [job_out(plan=resolved.model_dump(mode="json"))]
    result = run_grid("fl", "show", "7")
    assert result.exit_code == 0, result.output
    assert expected in table_lines(result)


def test_show_keeps_training_figures(run_grid: RunGrid, network: StubNetwork) -> None:
    network.jobs = [job_out("training", {"loss": "mse"}, rounds=5, last_round=closed_round(2))]
    network.rounds = [closed_round(1, loss=0.5, accuracy=0.75), closed_round(2, loss=0.25)]
    result = run_grid("fl", "show", "7")
    assert result.exit_code == 0, result.output
    lines = table_lines(result)
    assert "Federated job 7" in lines and "kind │ training" in lines
    assert "aggregation │ ckks, quorum 2" in lines and "strategy │ fedavg" in lines
    assert "round │ status │ domains │ rows │ loss │ accuracy" in lines
    assert "1 │ closed │ hospital-a, hospital-b │ 40 │ 0.5000 │ 0.7500" in lines
    assert "computes" not in result.stdout


def test_list_and_show_name_the_strategy(run_grid: RunGrid, network: StubNetwork) -> None:
    adam = {"strategy": "fedadam", "server_lr": 0.05, "fraction": 0.5, "min_sample": 3}
    network.jobs = [job_out("training", {"loss": "mse"}, rounds=5, **adam)]
    network.rounds = []
    lines = table_lines(run_grid("fl", "list"))
    assert any(line.startswith("7 │ training │") and "│ fedadam │" in line for line in lines)
    lines = table_lines(run_grid("fl", "show", "7"))
    assert (
        "strategy │ fedadam (server_lr 0.05, beta1 0.9, beta2 0.99, tau 0.001); 0.5 of the "
        "domains each round, at least 3"
    ) in lines


# --- grid fl verify -------------------------------------------------------------------------


@pytest.mark.parametrize(("ok", "exit_code"), [(True, 0), (False, 1)])
def test_verify_prints_the_proof_and_fails_when_a_check_does(
    run_grid: RunGrid, network: StubNetwork, ok: bool, exit_code: int
) -> None:
    network.provable = StubProvable(StubProof(ok=ok))
    args = ("fl", "verify", "7", "--rpc", "http://chain", "--registry-address", "0xabc")
    result = run_grid(*args, "--spec-hash", "0x" + "5" * 64)
    assert result.exit_code == exit_code, result.output
    assert result.stdout == StubProof(ok=ok).render() + "\n"
    # The registry is the caller's, never one a node names.
    [asked] = network.provable.asked
    assert asked == {
        "rpc": "http://chain",
        "model": None,
        "registry_address": "0xabc",
        "spec_hash": "0x" + "5" * 64,
    }
    assert json.loads(run_grid(*args, "--json").stdout) == {"ok": ok}


def test_verify_against_a_chain_that_fails_says_so_in_one_line(
    run_grid: RunGrid, network: StubNetwork
) -> None:
    network.provable = StubProvable(StubProof(ok=True), RegistryError("no registry at 0xabc"))
    result = run_grid("fl", "verify", "7", "--rpc", "http://chain", "--registry-address", "0xabc")
    assert failed(result) == "Error: no registry at 0xabc"
