"""A federated round's phase timings say how long a domain trained, which grows with its rows:
they reach only those who may read exact row counts."""

from __future__ import annotations

from domain.disclosure import FULL, Disclosure, shown_event


def test_a_rounds_phase_timings_reach_only_who_may_read_row_counts() -> None:
    point = {"phase": "round", "round": 1, "rounds": 2, "bytes": 9, "loss": 0.5}
    data = {**point, "timings": {"began_at": 1.0, "train_s": 0.25}}
    assert shown_event("progress", data, FULL) == data
    for shown in (Disclosure(metrics=True, counts=False), Disclosure(metrics=False, counts=False)):
        seen = shown_event("progress", data, shown)
        assert seen is not None and "timings" not in seen
