"""A federated training job's strategy: how the domains' averaged update moves the global model,
and which domains train in each round.

`StrategyTerms` is what a job's spec, its invitations and a worker's lease all carry: the
strategy's name and hyperparameters (the server optimizers of Reddi et al., 2021, "Adaptive
Federated Optimization", or FedProx's proximal weight), and the per-round domain sampling.
`draw_sample` is the draw every participant can recompute from the job's seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Strategy = Literal["fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad"]
STRATEGIES: tuple[str, ...] = Strategy.__args__  # type: ignore[attr-defined]
# The strategies that step a server optimizer on the decrypted average, and the
# hyperparameters each reads, with their defaults (Reddi et al.'s tau; Flower's server
# learning rates; FedAvgM's momentum of Hsu et al., 2019).
SERVER_DEFAULTS: dict[str, dict[str, float]] = {
    "fedavgm": {"server_lr": 1.0, "momentum": 0.9},
    "fedadam": {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
    "fedyogi": {"server_lr": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
    "fedadagrad": {"server_lr": 0.1, "beta1": 0.9, "tau": 1e-3},
}
HYPERPARAMETERS = ("server_lr", "momentum", "beta1", "beta2", "tau")
SEED_PATTERN = r"^[0-9a-f]{32}$"


class StrategyTerms(BaseModel):
    """A training job's strategy and sampling, checked as one: a hyperparameter the strategy
    does not read is an error, and the ones it reads are filled with their defaults."""

    strategy: Strategy = "fedavg"
    mu: float = Field(default=0.0, ge=0, le=100, description="FedProx's proximal weight.")
    server_lr: float | None = Field(
        default=None, gt=0, le=100, description="The server optimizer's learning rate (eta)."
    )
    momentum: float | None = Field(default=None, ge=0, lt=1, description="FedAvgM's momentum.")
    beta1: float | None = Field(
        default=None, ge=0, lt=1, description="FedAdam/FedYogi/FedAdagrad's first-moment decay."
    )
    beta2: float | None = Field(
        default=None, ge=0, lt=1, description="FedAdam/FedYogi's second-moment decay."
    )
    tau: float | None = Field(
        default=None, gt=0, le=1, description="Adaptivity: added to the root of the second moment."
    )
    fraction: float = Field(
        default=1.0, gt=0, le=1, description="Share of the approved domains sampled each round."
    )
    min_sample: int | None = Field(
        default=None, ge=1, le=64, description="Fewest domains a round samples (fraction < 1)."
    )
    sample_seed: str | None = Field(
        default=None,
        pattern=SEED_PATTERN,
        description="The draw's seed: the network draws it when the job is filed.",
    )

    @model_validator(mode="after")
    def _strategy_reads_its_terms(self) -> StrategyTerms:
        if self.strategy == "fedprox" and self.mu <= 0:
            raise ValueError("fedprox needs mu > 0 (the proximal term's weight)")
        if self.strategy != "fedprox" and self.mu != 0:
            raise ValueError("mu is FedProx's parameter: set strategy='fedprox' to use it")
        reads = SERVER_DEFAULTS.get(self.strategy, {})
        for name in HYPERPARAMETERS:
            if name in reads:
                if getattr(self, name) is None:
                    setattr(self, name, reads[name])
            elif getattr(self, name) is not None:
                users = [s for s, terms in SERVER_DEFAULTS.items() if name in terms]
                raise ValueError(
                    f"{name} is a parameter of {', '.join(users)}, not of {self.strategy}"
                )
        if self.fraction == 1 and self.min_sample is not None:
            raise ValueError("min_sample applies only when fraction is below 1 (sampling)")
        return self

    @property
    def server_optimizer(self) -> bool:
        """Whether a server optimizer steps on the average (FedAvg and FedProx take it as is)."""
        return self.strategy in SERVER_DEFAULTS

    @property
    def sampling(self) -> bool:
        return self.fraction < 1

    def strategy_terms(self) -> dict[str, Any]:
        """These fields alone, as JSON: what an invitation and a worker's lease carry."""
        return self.model_dump(mode="json", include=set(StrategyTerms.model_fields))

    def describe(self) -> str:
        """The strategy in a few words, for listings and the request page."""
        reads = SERVER_DEFAULTS.get(self.strategy, {})
        terms = [f"{name} {getattr(self, name):g}" for name in HYPERPARAMETERS if name in reads]
        if self.strategy == "fedprox":
            terms.append(f"mu {self.mu:g}")
        text = self.strategy + (f" ({', '.join(terms)})" if terms else "")
        if self.sampling:
            text += f"; {self.fraction:g} of the domains each round, at least {self.min_sample}"
        return text


def sample_size(domains: int, fraction: float, min_sample: int | None) -> int:
    """How many of `domains` approved domains a round samples: the fraction rounded up, at
    least `min_sample`, at most all of them."""
    wanted = max(math.ceil(fraction * domains - 1e-9), min_sample or 1)
    return min(domains, wanted)


def draw_sample(
    seed: str, number: int, domain_ids: Iterable[str], fraction: float, min_sample: int | None
) -> list[str]:
    """The domains (node ids, sorted) that train in round `number`.

    Each domain's rank is sha256(seed, round, its node id): the draw depends on nothing but the
    job's seed, the round and the set of approved domains, so every participant recomputes it.
    """
    ids = sorted(set(domain_ids))
    if fraction >= 1:
        return ids

    def rank(domain_id: str) -> bytes:
        return hashlib.sha256(f"grid-sample:v1:{seed}:{number}:{domain_id}".encode()).digest()

    return sorted(sorted(ids, key=rank)[: sample_size(len(ids), fraction, min_sample)])
