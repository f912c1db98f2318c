"""Server optimizers and domain sampling on the Flower peer's work, in one process.

The work of `bench/federated.py --peer-split` (digits[:1500] over 3 domains with a
Dirichlet(0.5) label skew, the MLP 64-512-128-10, 1 local epoch of SGD with lr 0.05 and
batch 32, 20 rounds), with the rounds' averages taken in plain torch and stepped by the
server optimizer every domain's worker runs (`worker/server_optimizer.py`, on the model's
parameters). It prints each strategy's test accuracy after every 5 rounds, and FedAvg's with
half of six domains sampled per round (the same rows cut into six). No grid processes run:
CKKS changes the averages by about 1e-8 (docs/federated.md), and `bench/federated.py`
measures the rounds' costs.

    .venv/bin/python bench/strategies.py [--rounds 20]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd
import torch
from federated import peer_epoch, peer_mlp, peer_split  # bench/ is on sys.path
from torch import nn

from grid_common.strategy import StrategyTerms, draw_sample
from worker.server_optimizer import ServerOptimizer

CASES: list[tuple[str, dict[str, Any]]] = [
    ("fedavg", {"strategy": "fedavg"}),
    ("fedavgm (lr 1, momentum 0.9)", {"strategy": "fedavgm"}),
    ("fedavgm (lr 1, momentum 0.5)", {"strategy": "fedavgm", "momentum": 0.5}),
    ("fedadam (lr 0.01)", {"strategy": "fedadam", "server_lr": 0.01}),
    ("fedadam (lr 0.1, the default)", {"strategy": "fedadam"}),
    ("fedyogi (lr 0.01)", {"strategy": "fedyogi"}),
    ("fedadagrad (lr 0.01)", {"strategy": "fedadagrad", "server_lr": 0.01}),
]


def _flat(model: nn.Module) -> np.ndarray:
    tensors = model.state_dict().values()
    return np.concatenate([t.detach().double().numpy().ravel() for t in tensors])


def _load(model: nn.Module, vector: np.ndarray) -> None:
    state, offset = {}, 0
    for name, tensor in model.state_dict().items():
        part = vector[offset : offset + tensor.numel()].reshape(tensor.shape)
        state[name] = torch.tensor(part, dtype=tensor.dtype)
        offset += tensor.numel()
    model.load_state_dict(state)


def _local(model: nn.Module, part: pd.DataFrame) -> np.ndarray:
    """One local epoch from `model`, as the peer trains: its weights afterwards."""
    return _flat(peer_epoch(model, part))


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model.eval()(torch.tensor(x)).argmax(1).numpy()
    return float((predicted == y).mean())


def run(
    terms: StrategyTerms,
    parts: list[pd.DataFrame],
    test: tuple[np.ndarray, np.ndarray],
    rounds: int,
) -> list[float]:
    """Accuracy after every 5th round of one strategy (sampling by `terms`, seed fixed)."""
    model = peer_mlp()
    optimizer = ServerOptimizer(terms, _flat(model))
    names = [f"domain-{i}" for i in range(len(parts))]
    scores = []
    for number in range(1, rounds + 1):
        drawn = draw_sample("0" * 32, number, names, terms.fraction, terms.min_sample)
        chosen = [parts[names.index(name)] for name in drawn]
        rows = sum(len(p) for p in chosen)
        average = sum(_local(model, p) * (len(p) / rows) for p in chosen)
        _load(model, optimizer.step(np.asarray(average)))
        if number % 5 == 0:
            scores.append(_accuracy(model, *test))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    parts, x_test, y_test = peer_split()
    test = (x_test, y_test)
    header = " ".join(f"{f'round {n}':>9}" for n in range(5, args.rounds + 1, 5))
    print(f"{'strategy':<34}{header}")
    for label, fields in CASES:
        scores = run(StrategyTerms.model_validate(fields), parts, test, args.rounds)
        print(f"{label:<34}" + " ".join(f"{s:>9.4f}" for s in scores))
    # The same rows as six domains (each of the three cut in two), half sampled per round.
    halves = [
        half.reset_index(drop=True)
        for part in parts
        for half in (part.iloc[: len(part) // 2], part.iloc[len(part) // 2 :])
    ]
    for label, fields in [
        ("fedavg, 6 domains, all", {"strategy": "fedavg"}),
        ("fedavg, 6 domains, 3 per round", {"fraction": 0.5, "min_sample": 3}),
    ]:
        scores = run(StrategyTerms.model_validate(fields), halves, test, args.rounds)
        print(f"{label:<34}" + " ".join(f"{s:>9.4f}" for s in scores))


if __name__ == "__main__":
    main()
