"""The training loop, in this process: metrics, events, weights, DP-SGD and every way it fails."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from grid_common.plan import TrainingPlan
from worker.spec import DataFile, TrainingEvent, TrainingSpec
from worker.training import WEIGHTS_FILE, load_data, train

from .training_jobs import MLP, BatchNormMLP, blobs, make_spec, write_npz


def run(spec: TrainingSpec, stop_after: int | None = None) -> tuple[object, list[TrainingEvent]]:
    events: list[TrainingEvent] = []
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return stop_after is not None and calls > stop_after

    return train(spec, events.append, should_stop), events


def with_plan(spec: TrainingSpec, **changes: object) -> TrainingSpec:
    plan = TrainingPlan.model_validate(spec.plan.model_dump() | changes)
    return dataclasses.replace(spec, plan=plan)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> TrainingSpec:
    return make_spec(tmp_path_factory.mktemp("job"), validation_split=0.2)


def test_trains_an_mlp_well_above_chance(spec: TrainingSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(spec, output_dir=tmp_path / "out")
    outcome, events = run(spec)

    assert outcome.status == "completed", outcome.reason
    m = outcome.metrics
    assert m["accuracy"] > 0.9 and m["val_accuracy"] > 0.9  # chance is 1/3
    assert m["epochs"] == 5 and m["samples"] == 240 and m["validation_samples"] == 60
    assert m["steps"] == 5 * 8 and m["seconds"] > 0
    epochs = [e.data for e in events if e.kind == "progress" and e.data["phase"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "steps_per_epoch"} <= set(epochs[0])
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    steps = [e.data for e in events if e.kind == "progress" and e.data["phase"] == "step"]
    assert steps and all(1 <= s["step"] <= s["steps_per_epoch"] == 8 for s in steps)
    logs = [e.data["message"] for e in events if e.kind == "log"]
    assert any("loaded model: " in line and "parameters" in line for line in logs)

    # The trained weights keep their names and load into the data scientist's own class.
    trained = load_file(str(outcome.weights_path))
    assert set(trained) == set(load_file(str(spec.weights_path)))
    model = MLP()
    model.load_state_dict(trained)
    features, labels = blobs()
    with torch.no_grad():
        predicted = model.eval()(torch.from_numpy(features)).argmax(dim=1).numpy()
    assert np.mean(predicted == labels) > 0.9


def test_same_seed_same_weights(spec: TrainingSpec, tmp_path: Path) -> None:
    spec = with_plan(spec, epochs=2, validation_split=0.0)
    first, _ = run(dataclasses.replace(spec, output_dir=tmp_path / "a"))
    second, _ = run(dataclasses.replace(spec, output_dir=tmp_path / "b"))
    a, b = load_file(str(first.weights_path)), load_file(str(second.weights_path))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.metrics["loss"] == second.metrics["loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers(spec: TrainingSpec, tmp_path: Path, optimizer: str) -> None:
    spec = with_plan(spec, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    outcome, _ = run(dataclasses.replace(spec, output_dir=tmp_path))
    assert outcome.status == "completed" and outcome.metrics["accuracy"] > 0.9


def test_fedprox_keeps_the_local_model_near_the_global_one(
    spec: TrainingSpec, tmp_path: Path
) -> None:
    """FedProx adds mu/2 * ||w - w_global||^2: the larger mu, the closer training stays."""
    start = load_file(str(spec.weights_path))
    spec = with_plan(spec, epochs=2, validation_split=0.0)

    def distance(mu: float) -> float:
        out = dataclasses.replace(spec, output_dir=tmp_path / f"mu-{mu}", proximal_mu=mu)
        outcome, _ = run(out)
        assert outcome.status == "completed", outcome.reason
        trained = load_file(str(outcome.weights_path))
        return float(sum(torch.sum((trained[k] - start[k]) ** 2) for k in start) ** 0.5)

    plain, proximal, strong = distance(0.0), distance(1.0), distance(10.0)
    assert strong < proximal < plain


def test_step_events_are_throttled(spec: TrainingSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(with_plan(spec, epochs=10, batch_size=4), output_dir=tmp_path)
    outcome, events = run(spec)
    steps = [e for e in events if e.kind == "progress" and e.data["phase"] == "step"]
    assert outcome.metrics["steps"] == 10 * 60
    # At most ~5 a second, and far fewer than the 600 steps taken.
    assert len(steps) <= outcome.metrics["seconds"] * 5 + 2


def test_validation_runs_in_eval_mode(tmp_path: Path) -> None:
    # Every row is the same, so any split validates on that row; with dropout 0.9 left on,
    # the validation loss would be far from the eval-mode loss.
    features = np.ones((64, 8), dtype=np.float32)
    labels = np.zeros(64, dtype=np.int64)
    model = MLP(dropout=0.9)
    spec = make_spec(
        tmp_path,
        model=model,
        data=[write_npz(tmp_path / "same.npz", features, labels)],
        optimizer="sgd",
        lr=1e-9,
        epochs=1,
        validation_split=0.5,
    )
    outcome, _ = run(spec)
    model.load_state_dict(load_file(str(spec.weights_path)))
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(features[:1]))
    expected = torch.nn.functional.cross_entropy(out, torch.tensor([0])).item()
    assert outcome.metrics["val_loss"] == pytest.approx(expected, rel=1e-4)


def test_batch_norm_statistics_survive_validation(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, model=BatchNormMLP(), epochs=2, validation_split=0.25)
    outcome, _ = run(spec)
    assert outcome.status == "completed", outcome.reason
    trained = load_file(str(outcome.weights_path))
    # Two epochs of 8 training batches each; validation batches are not counted.
    assert int(trained["norm.num_batches_tracked"]) == 2 * 8


def test_regression_and_binary_losses(tmp_path: Path) -> None:
    features, labels = blobs()
    target = (features[:, 0] * 0.5 - features[:, 1]).astype(np.float32)
    data = [write_npz(tmp_path / "reg.npz", features, target)]
    spec = make_spec(tmp_path / "mse", model=MLP(classes=1), data=data, loss="mse", epochs=20)
    outcome, events = run(spec)
    assert outcome.status == "completed", outcome.reason
    assert outcome.metrics["loss"] < 0.2 * float(np.var(target))
    assert "accuracy" not in outcome.metrics
    assert any("accuracy is not defined" in e.data.get("message", "") for e in events)

    binary = [write_npz(tmp_path / "bin.npz", features, (labels == 1).astype(np.float32))]
    spec = make_spec(tmp_path / "bce", model=MLP(classes=1), data=binary, loss="bce_with_logits")
    outcome, _ = run(spec)
    assert outcome.status == "completed", outcome.reason
    assert outcome.metrics["accuracy"] > 0.9


def test_tables_from_several_files(tmp_path: Path) -> None:
    features, labels = blobs()
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(8)])
    frame["y"] = labels
    frame.iloc[:150].to_csv(tmp_path / "a.csv", index=False)
    frame.iloc[150:].to_parquet(tmp_path / "b.parquet")
    files = [
        DataFile(tmp_path / "a.csv", "csv", "y"),
        DataFile(tmp_path / "b.parquet", "parquet", "y"),
    ]
    x, y = load_data(files)
    assert x.shape == (300, 8) and np.array_equal(y, labels)
    outcome, _ = run(make_spec(tmp_path / "job", data=files))
    assert outcome.status == "completed" and outcome.metrics["samples"] == 300


def test_cancel_mid_epoch(spec: TrainingSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(spec, output_dir=tmp_path)
    outcome, events = run(spec, stop_after=3)
    assert outcome.status == "cancelled"
    assert not (tmp_path / WEIGHTS_FILE).exists()
    assert not [e for e in events if e.kind == "progress" and e.data["phase"] == "epoch"]
    assert any("cancelled at epoch 1, step 4" in e.data.get("message", "") for e in events)


def test_nan_loss_fails_naming_epoch_and_step(tmp_path: Path) -> None:
    features, labels = blobs()
    features[17, 3] = np.inf
    spec = make_spec(tmp_path, data=[write_npz(tmp_path / "inf.npz", features, labels)])
    outcome, _ = run(spec)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("the loss became nan at epoch 1, step ")


def test_diverging_training_fails(spec: TrainingSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(with_plan(spec, optimizer="sgd", lr=10.0), output_dir=tmp_path)
    features, labels = blobs()
    data = [write_npz(tmp_path / "big.npz", features * 1e18, labels)]
    outcome, _ = run(dataclasses.replace(spec, data=data))
    assert outcome.status == "failed"
    assert "the loss became" in outcome.reason and "lower the learning rate" in outcome.reason


def test_differential_privacy_spends_the_budget_and_learns(tmp_path: Path) -> None:
    features, labels = blobs(rows=600)
    spec = make_spec(
        tmp_path,
        data=[write_npz(tmp_path / "dp.npz", features, labels)],
        epochs=3,
        batch_size=60,
        lr=0.05,
        validation_split=0.1,
        dp={"epsilon": 2.0, "delta": 1e-5, "max_grad_norm": 1.0},
    )
    outcome, events = run(spec)
    assert outcome.status == "completed", outcome.reason
    m = outcome.metrics
    assert 1.8 <= m["epsilon"] <= 2.0
    assert m["delta"] == 1e-5 and m["noise_multiplier"] > 0
    assert m["val_accuracy"] > 0.6  # chance is 1/3
    logs = [e.data["message"] for e in events if e.kind == "log"]
    assert any(line.startswith("DP-SGD: noise multiplier sigma=") for line in logs)
    epochs = [e.data for e in events if e.kind == "progress" and e.data["phase"] == "epoch"]
    assert epochs[0]["epsilon"] < epochs[-1]["epsilon"] == m["epsilon"]


def test_differential_privacy_budget_covers_every_round_of_a_job(tmp_path: Path) -> None:
    """A federated job's rounds share one budget: the noise is calibrated for all of them and
    the accountant carries the earlier rounds' steps, so the last round ends within epsilon."""
    features, labels = blobs(rows=300)
    one_round = make_spec(
        tmp_path,
        data=[write_npz(tmp_path / "dp.npz", features, labels)],
        epochs=1,
        batch_size=30,
        dp={"epsilon": 2.0, "delta": 1e-5},
    )
    single, _ = run(one_round)
    assert single.status == "completed", single.reason
    spent = []
    for done in range(5):
        round_spec = dataclasses.replace(
            one_round, output_dir=tmp_path / f"round-{done}", dp_rounds=5, dp_rounds_spent=done
        )
        outcome, _ = run(round_spec)
        assert outcome.status == "completed", outcome.reason
        assert outcome.metrics["noise_multiplier"] > single.metrics["noise_multiplier"]
        spent.append(outcome.metrics["epsilon"])
    assert spent == sorted(spent) and spent[0] < spent[-1]
    assert 1.8 <= spent[-1] <= 2.0  # the whole job's spend, not each round's


def test_differential_privacy_refuses_batch_norm(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, model=BatchNormMLP(), dp={"epsilon": 1.0, "delta": 1e-5})
    outcome, _ = run(spec)
    assert outcome.status == "failed"
    # Refused before any row is read: under DP no buffer may change, running statistics included.
    assert "no model buffer may change" in outcome.reason
    assert "'norm.running_mean'" in outcome.reason


def test_differential_privacy_noise_does_not_follow_the_plan_seed(tmp_path: Path) -> None:
    """The same spec, seed included, run twice under DP: sampling and noise differ each time."""
    released = []
    for name in ("first", "second"):
        spec = make_spec(tmp_path / name, epochs=1, seed=7, dp={"epsilon": 2.0, "delta": 1e-5})
        outcome, events = run(spec)
        assert outcome.status == "completed", outcome.reason
        assert outcome.weights_path is not None
        released.append(load_file(str(outcome.weights_path)))
        logs = [e.data["message"] for e in events if e.kind == "log"]
        assert any("operating system's entropy" in line for line in logs)
    first, second = released
    assert all(not torch.equal(first[k], second[k]) for k in first)


def test_without_dp_the_seed_repeats_a_run(tmp_path: Path) -> None:
    released = []
    for name in ("first", "second"):
        outcome, _ = run(make_spec(tmp_path / name, epochs=1, seed=7, validation_split=0.2))
        assert outcome.weights_path is not None
        released.append(load_file(str(outcome.weights_path)))
    assert all(torch.equal(released[0][k], released[1][k]) for k in released[0])


def test_a_buffer_changed_against_the_checks_withholds_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a write to slip past the graph checks, the weights stay home."""
    monkeypatch.setattr("worker.training.check_loaded_buffer_updates", lambda ep, dp: [])
    outcome, _ = run(make_spec(tmp_path, model=BatchNormMLP(), epochs=1))
    assert outcome.status == "failed"
    assert "buffer 'norm.running_mean'" in (outcome.reason or "")
    assert not (tmp_path / "output" / WEIGHTS_FILE).exists()


def without_bias(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if k != "out.bias"}


def with_extra(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return weights | {"extra": torch.zeros(2)}


def with_wrong_shape(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return weights | {"hidden.weight": torch.zeros(16, 9)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (without_bias, "missing out.bias"),
        (with_extra, "not in the model extra"),
        (with_wrong_shape, r"hidden.weight is \[16, 9\], the model needs \[16, 8\]"),
    ],
)
def test_weights_that_do_not_fit(
    spec: TrainingSpec,
    tmp_path: Path,
    change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    message: str,
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(change(load_file(str(spec.weights_path))), str(path))
    outcome, _ = run(dataclasses.replace(spec, weights_path=path, output_dir=tmp_path))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("the weights do not fit the model: ")
    assert re.search(message, outcome.reason), outcome.reason


def test_weights_that_are_not_safetensors(spec: TrainingSpec, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x80\x04pickle")
    outcome, _ = run(dataclasses.replace(spec, weights_path=path, output_dir=tmp_path))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("the weights file is not a valid safetensors file")


def test_model_archive_problems_fail_the_job(spec: TrainingSpec, tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(b"garbage")
    outcome, _ = run(dataclasses.replace(spec, model_path=path, output_dir=tmp_path))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not a torch.export archive (.pt2)")


def test_model_exported_for_a_fixed_batch(spec: TrainingSpec, tmp_path: Path) -> None:
    program = torch.export.export(MLP().train(), (torch.randn(4, 8),))
    torch.export.save(program, str(tmp_path / "fixed.pt2"))
    outcome, _ = run(dataclasses.replace(spec, model_path=tmp_path / "fixed.pt2"))
    assert outcome.status == "failed"
    assert "exported for batches of exactly [4] rows" in outcome.reason


def bad_data(tmp_path: Path, case: str) -> tuple[list[DataFile], str]:
    features, labels = blobs()
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(8)])
    frame["y"] = labels
    if case == "text column":
        frame["f2"] = "x"
        frame.to_csv(tmp_path / "t.csv", index=False)
        return [DataFile(tmp_path / "t.csv", "csv", "y")], "column 'f2' holds"
    if case == "no label":
        data = dataclasses.replace(write_npz(tmp_path / "d.npz", features, labels), label="y")
        return [data], "label 'y' is not an array of the data"
    if case == "too few features":
        return [write_npz(tmp_path / "d.npz", features[:, :5], labels)], (
            r"the model takes rows of shape \[8\] but the data's rows have shape \[5\]"
        )
    if case == "too many classes":
        return [write_npz(tmp_path / "d.npz", features, labels * 2)], (
            "some labels are class numbers past the 3 class scores the model outputs"
        )
    if case == "fractional classes":
        return [write_npz(tmp_path / "d.npz", features, labels + 0.5)], "whole-number class"
    if case == "mismatched files":
        return [
            write_npz(tmp_path / "a.npz", features, labels),
            write_npz(tmp_path / "b.npz", features[:, :4], labels),
        ], r"dataset file 2 has rows of features \[4\]"
    if case == "missing values":
        frame.loc[3, "f1"] = np.nan
        frame.to_csv(tmp_path / "m.csv", index=False)
        return [DataFile(tmp_path / "m.csv", "csv", "y")], "column 'f1' has missing values"
    if case == "unreadable file":
        (tmp_path / "x.npz").write_bytes(b"nope")
        return [DataFile(tmp_path / "x.npz", "npz", "label")], "not a valid npz file"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "text column",
        "no label",
        "too few features",
        "too many classes",
        "fractional classes",
        "mismatched files",
        "missing values",
        "unreadable file",
    ],
)
def test_training_data_errors(spec: TrainingSpec, tmp_path: Path, case: str) -> None:
    data, message = bad_data(tmp_path, case)
    outcome, _ = run(dataclasses.replace(spec, data=data, output_dir=tmp_path / "out"))
    assert outcome.status == "failed"
    assert re.search(message, outcome.reason), outcome.reason
