"""Each round of a federated job trains in the same process on the same archive: the program is
loaded and checked once, and an archive with other bytes is checked afresh."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.worker.training_jobs import BatchNormMLP, make_spec, write_model
from worker import training
from worker.spec import TrainingEvent


def test_a_second_round_on_the_same_archive_skips_the_checks_and_another_archive_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[object] = []
    check = training.check_loaded_buffer_updates

    def counting(ep: object, **options: bool) -> list[str]:
        checked.append(ep)
        return check(ep, **options)

    monkeypatch.setattr(training, "check_loaded_buffer_updates", counting)
    monkeypatch.setattr(training, "_PROGRAM", {})
    events: list[TrainingEvent] = []
    spec = make_spec(tmp_path / "job", epochs=1)
    first = training.train(spec, events.append)
    again = training.train(replace(spec, weights_path=first.weights_path), events.append)
    assert (first.status, again.status) == ("completed", "completed")
    assert len(checked) == 1

    other, weights = write_model(tmp_path, BatchNormMLP(), "other")
    assert training.train(replace(spec, model_path=other, weights_path=weights), events.append)
    assert len(checked) == 2
