"""The server optimizer each domain steps on a federated job's decrypted average.

Reddi et al. (2021), "Adaptive Federated Optimization", Algorithm 2: with the global model x
and the round's sample-weighted average of the domains' models, the pseudo-gradient is
delta = average - x, and

    FedAvgM:    m = momentum * m + delta                        x = x + lr * m
    FedAdagrad: m = b1 * m + (1 - b1) * delta;  v = v + delta^2
    FedAdam:    m = b1 * m + (1 - b1) * delta;  v = b2 * v + (1 - b2) * delta^2
    FedYogi:    m = b1 * m + (1 - b1) * delta;  v = v - (1 - b2) * delta^2 * sign(v - delta^2)
                (the adaptive three)                           x = x + lr * m / (sqrt(v) + tau)

with m starting at 0 and v at tau^2 (the paper's v_{-1} >= tau^2). FedAvg and FedProx take
the average as the next model. Every domain decrypts the same aggregates and steps them in
round order with the same elementwise float64 operations (no reductions, whose order could
vary), so every domain holds the same x, bit for bit, and attests the same final model.

Only the model's parameters are stepped: buffers (normalization statistics, counters) are
not gradients' targets and take the average, as FedAvg gives them.
"""

from __future__ import annotations

import numpy as np

from grid_common.strategy import StrategyTerms


class ServerOptimizer:
    """One job's server optimizer state: the global model x and its moments m and v."""

    def __init__(
        self, terms: StrategyTerms, initial: np.ndarray, trainable: np.ndarray | None = None
    ) -> None:
        """`initial` is the flat initial model; `trainable` marks the values the optimizer
        steps (every value if None)."""
        self.terms = terms
        self.x = np.array(initial, dtype=np.float64)
        self.trainable = (
            np.ones(self.x.shape, dtype=bool) if trainable is None else trainable.astype(bool)
        )
        if self.trainable.shape != self.x.shape:
            raise ValueError("the trainable mask must match the model's values")
        self.m = np.zeros_like(self.x)
        tau = terms.tau if terms.tau is not None else 0.0
        self.v = np.full_like(self.x, tau * tau)
        self.steps = 0

    def step(self, average: np.ndarray) -> np.ndarray:
        """Move x by this round's average; returns the new x (the next round's model)."""
        average = np.asarray(average, dtype=np.float64)
        if average.shape != self.x.shape:
            raise ValueError(f"expected {self.x.size} values, got {average.size}")
        self.steps += 1
        if not self.terms.server_optimizer:
            self.x = average.copy()
            return self.x
        terms = self.terms
        assert terms.server_lr is not None
        delta = average - self.x
        if terms.strategy == "fedavgm":
            assert terms.momentum is not None
            self.m = terms.momentum * self.m + delta
            stepped = self.x + terms.server_lr * self.m
        else:
            assert terms.beta1 is not None and terms.tau is not None
            self.m = terms.beta1 * self.m + (1.0 - terms.beta1) * delta
            squared = delta * delta
            if terms.strategy == "fedadagrad":
                self.v = self.v + squared
            else:
                assert terms.beta2 is not None
                if terms.strategy == "fedadam":
                    self.v = terms.beta2 * self.v + (1.0 - terms.beta2) * squared
                else:  # fedyogi
                    self.v = self.v - (1.0 - terms.beta2) * squared * np.sign(self.v - squared)
            stepped = self.x + terms.server_lr * self.m / (np.sqrt(self.v) + terms.tau)
        self.x = np.where(self.trainable, stepped, average)
        return self.x
