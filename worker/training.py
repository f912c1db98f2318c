"""The training loop a worker's child runs: an exported model, a domain's files, a plan."""

from __future__ import annotations

import hashlib
import math
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils.data import DataLoader, TensorDataset

from grid_common.datafiles import DatasetFileError, load_arrays, read_table
from grid_common.losses import loss_function
from grid_common.model_archive import (
    ModelArchiveError,
    check_loaded_buffer_updates,
    load_exported_program,
    save_for_training,
)
from grid_common.plan import TrainingPlan
from grid_common.training_data import TrainingDataError, targets_for_loss, training_arrays
from worker.redact import redacted
from worker.spec import DataFile, TrainingEvent, TrainingOutcome, TrainingSpec

WEIGHTS_FILE = "weights.safetensors"
STEP_EVENT_INTERVAL = 0.2  # seconds between step events: at most ~5 a second reach the domain
# Operators whose argument at this index says "training mode"; validation flips it off.
_TRAINING_FLAGS = {
    "dropout": 2,
    "feature_dropout": 2,
    "alpha_dropout": 2,
    "feature_alpha_dropout": 2,
    "native_dropout": 2,
    "batch_norm": 5,
    "native_batch_norm": 5,
    "_native_batch_norm_legit": 5,
    "_native_batch_norm_legit_functional": 5,
    "cudnn_batch_norm": 5,
}
# The program this process loaded and checked last, with its key (see `_Run._program`).
_PROGRAM: dict[str, Any] = {}
_OOM_MARKERS = ("can't allocate memory", "out of memory", "not enough memory")

Emit = Callable[[TrainingEvent], None]


RANDOMNESS_NOTE = (
    "DP-SGD: the batch sampling, the noise and the validation split draw on generators seeded "
    "with 64 bits from the operating system's entropy for this run alone; the plan's seed "
    "is not used by any of them, so no run can be repeated to remove its noise"
)


def os_entropy_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded with 64 bits from the OS's CSPRNG, known to no one."""
    return torch.Generator(device=device).manual_seed(secrets.randbits(64))


class TrainingFailed(Exception):
    """Training cannot go on; the message is the reason the job's owner and author will read."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed (Python, numpy or a torch allocator)."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)


def out_of_memory_reason(memory_mb: int) -> str:
    """The failure reason of a job that asked for more memory than its limit."""
    return f"out of memory: the job's limit is {memory_mb} MiB"


def train(
    spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool] = lambda: False
) -> TrainingOutcome:
    """Train `spec`'s model on its data per its plan; never raises for the job's own faults.

    Streams progress and log events through `emit`, checks `should_stop` between steps, and on
    success writes the trained weights to `spec.output_dir / "weights.safetensors"`.
    """
    try:
        return _Run(spec, emit, should_stop).run()
    except (ModelArchiveError, TrainingDataError, DatasetFileError, TrainingFailed) as e:
        return TrainingOutcome(status="failed", reason=str(e))
    except Exception as e:
        if is_out_of_memory(e):
            return TrainingOutcome(
                status="failed", reason=out_of_memory_reason(spec.limits.memory_mb)
            )
        raise


def warm_up(workdir: Path) -> None:
    """Run the first-time paths once (torch.export's loader, a training step) ahead of a job.

    The first load of any archive pays seconds of lazy imports and caches inside torch.
    """
    module = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    path = workdir / "warm-up.pt2"
    save_for_training(module, torch.randn(2, 4), path)
    program = load_exported_program(path, workdir).module()
    F.cross_entropy(program(torch.randn(3, 4)), torch.tensor([0, 1, 1])).backward()


def load_data(files: list[DataFile], *, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of all `files`, concatenated in order; their shapes must agree.

    Features are float32, or int64 with `integer` (for a model over integer ids).
    """
    if not files:
        raise TrainingDataError("the job names no dataset file to train on")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for i, f in enumerate(files, start=1):
        if f.format in ("csv", "parquet"):
            x, y = training_arrays(read_table(f.path, f.format), f.label, integer=integer)
        else:
            x, y = training_arrays(load_arrays(f.path, f.format), f.label, integer=integer)
        if xs and (x.shape[1:] != xs[0].shape[1:] or y.shape[1:] != ys[0].shape[1:]):
            raise TrainingDataError(
                f"dataset file {i} has rows of features {list(x.shape[1:])} and labels "
                f"{list(y.shape[1:])}, file 1 has {list(xs[0].shape[1:])} and "
                f"{list(ys[0].shape[1:])}: datasets trained together must have the same layout"
            )
        xs.append(x)
        ys.append(y)
    if len(xs) == 1:
        return xs[0], ys[0]
    label_dtype = np.result_type(*ys)
    return np.concatenate(xs), np.concatenate([y.astype(label_dtype) for y in ys])


@dataclass
class _Epoch:
    loss_sum: float = 0.0
    correct: float = 0.0
    samples: int = 0


class _Run:
    def __init__(self, spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool]) -> None:
        self.spec = spec
        self.plan: TrainingPlan = spec.plan
        self.emit = emit
        self.should_stop = should_stop
        self.started = time.monotonic()
        self.last_step_event = 0.0
        self.device = self._device(spec.device)
        self.accuracy = "accuracy" in self.plan.metrics
        if self.accuracy and self.plan.loss == "mse":
            self.log("accuracy is not defined for an mse loss; only the loss is reported")
            self.accuracy = False

    def log(self, message: str, *, private: bool = False) -> None:
        """A log line; `private` when it states a row count or a figure one follows from, so
        the domain shows it to the data scientist only where exact counts may be shown."""
        data: dict[str, Any] = {"message": message}
        if private:
            data["private"] = True
        self.emit(TrainingEvent(kind="log", data=data))

    def progress(self, **data: Any) -> None:
        self.emit(TrainingEvent(kind="progress", data=data))

    def _device(self, name: str) -> torch.device:
        if name.startswith("cuda") and not torch.cuda.is_available():
            self.log("the job asked for a GPU but this worker has none; training on the CPU")
            return torch.device("cpu")
        try:
            return torch.device(name)
        except RuntimeError as e:
            raise TrainingFailed(f"unknown device {name!r}") from e

    # -- setting up -------------------------------------------------------------------------

    def run(self) -> TrainingOutcome:
        torch.manual_seed(self.plan.seed)
        self.spec.output_dir.mkdir(parents=True, exist_ok=True)
        ep, changeable = self._program()
        module = ep.module()
        weight_names = self._load_weights(module)
        submitted = self._save_buffers(module)
        module.to(self.device)
        n_params = sum(p.numel() for p in module.parameters())
        self.log(f"loaded model: {n_params:,} parameters")
        input_dtype = self._check_input(ep)

        # A model exported with integer rows (token ids for an nn.Embedding) gets them exactly,
        # never by way of float32.
        x_np, y_np = load_data(self.spec.data, integer=not input_dtype.is_floating_point)
        targets_np = targets_for_loss(y_np, self.plan.loss)
        x = torch.from_numpy(x_np).to(input_dtype)
        y = torch.from_numpy(targets_np)
        self._check_features(ep, x)
        x_train, y_train, x_val, y_val = self._split(x, y)
        self.log(
            f"training on {len(x_train):,} rows"
            + (f", validating on {len(x_val):,}" if len(x_val) else "")
            + f" from {len(self.spec.data)} file(s)",
            private=True,
        )
        self.flags = self._training_flag_nodes(module)
        self._dry_run(module, x_train, y_train)

        if self.plan.dp is not None:
            outcome = self._train_dp(module, x_train, y_train, x_val, y_val)
        else:
            outcome = self._train(module, x_train, y_train, x_val, y_val)
        if outcome.status != "completed":
            return outcome
        self._check_buffers(module, submitted, changeable)
        out = self.spec.output_dir / WEIGHTS_FILE
        state = module.state_dict()
        safetensors.torch.save_file(
            {k: state[k].detach().to("cpu").contiguous().clone() for k in weight_names}, str(out)
        )
        return TrainingOutcome(status="completed", weights_path=out, metrics=outcome.metrics)

    def _program(self) -> tuple[Any, list[str]]:
        """The checked program, and the buffers training may change in it (see `_PROGRAM`).

        A federated job trains once per round in the same process on the same archive: it is
        loaded and checked the first time only (the functionalized buffer check alone takes
        0.3 s or more), keyed by the archive's sha256, so another file is checked afresh.
        """
        key = (hashlib.sha256(self.spec.model_path.read_bytes()).hexdigest(), self.plan.dp)
        if _PROGRAM.get("key") != key:
            with tempfile.TemporaryDirectory(dir=self.spec.output_dir) as tmp:
                ep = load_exported_program(self.spec.model_path, Path(tmp))
            # Checked again on the functionalized graph: the buffers training may change.
            changeable = check_loaded_buffer_updates(ep, dp=self.plan.dp is not None)
            _PROGRAM.update(key=key, program=(ep, changeable))
        program: tuple[Any, list[str]] = _PROGRAM["program"]
        return program

    def _load_weights(self, module: nn.Module) -> list[str]:
        try:
            weights = safetensors.torch.load_file(str(self.spec.weights_path))
        except Exception as e:  # not safetensors at all, or a truncated file
            raise TrainingFailed(f"the weights file is not a valid safetensors file: {e}") from e
        expected = module.state_dict()
        problems = []
        if missing := sorted(expected.keys() - weights.keys()):
            problems.append("missing " + ", ".join(missing))
        if unexpected := sorted(weights.keys() - expected.keys()):
            problems.append("not in the model " + ", ".join(unexpected))
        for name in sorted(expected.keys() & weights.keys()):
            have, need = list(weights[name].shape), list(expected[name].shape)
            if have != need:
                problems.append(f"{name} is {have}, the model needs {need}")
        if problems:
            raise TrainingFailed("the weights do not fit the model: " + "; ".join(problems))
        module.load_state_dict(weights, strict=True)
        return list(weights)

    def _user_input(self, ep: Any) -> torch.Tensor:
        name = ep.graph_signature.user_inputs[0]
        node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == name)
        return node.meta["val"]

    def _check_input(self, ep: Any) -> torch.dtype:
        val = self._user_input(ep)
        if val.dim() == 0 or isinstance(val.shape[0], int):
            raise TrainingFailed(
                f"the model was exported for batches of exactly {list(val.shape)[:1]} rows; "
                "export it with a dynamic batch dimension (Grid's client does)"
            )
        return val.dtype  # the dtype of the rows it was exported with: float32, or int64 ids

    def _check_features(self, ep: Any, x: torch.Tensor) -> None:
        need = list(self._user_input(ep).shape[1:])
        have = list(x.shape[1:])
        fixed = [d if isinstance(d, int) else None for d in need]
        if len(fixed) != len(have) or any(
            f is not None and f != h for f, h in zip(fixed, have, strict=True)
        ):
            shown = ["*" if f is None else f for f in fixed]
            raise TrainingFailed(
                f"the model takes rows of shape {shown} but the data's rows have shape {have}"
            )

    def _split(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(x)
        n_val = 0
        if self.plan.validation_split > 0:
            n_val = max(1, round(n * self.plan.validation_split))
            if n_val >= n:
                raise TrainingDataError(
                    f"a validation split of {self.plan.validation_split} leaves no training rows"
                )
        # Under DP the held-out rows are drawn from OS entropy too: which rows train must not
        # follow from a seed the data scientist chose. Without DP the seed makes runs repeatable.
        generator = (
            os_entropy_generator()
            if self.plan.dp is not None
            else torch.Generator().manual_seed(self.plan.seed)
        )
        order = torch.randperm(n, generator=generator)
        val, tr = order[:n_val], order[n_val:]
        return x[tr], y[tr], x[val], y[val]

    def _targets(self, out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if self.plan.loss != "cross_entropy" and yb.shape != out.shape:
            if yb.numel() != out.numel():
                raise TrainingFailed(
                    f"the model outputs {list(out.shape[1:])} per row but the labels have "
                    f"{list(yb.shape[1:])}: they must have the same number of values"
                )
            return yb.reshape(out.shape)
        return yb

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss_function(self.plan.loss)(out, target)

    def _correct(self, out: torch.Tensor, target: torch.Tensor) -> float:
        if self.plan.loss == "cross_entropy":
            return float((out.argmax(dim=1) == target).sum())
        hits = ((out > 0) == (target > 0.5)).float().reshape(len(out), -1).mean(dim=1)
        return float(hits.sum())

    def _forward(self, module: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        try:
            out = module(xb)
        except Exception as e:
            if is_out_of_memory(e):
                raise
            raise TrainingFailed(
                f"the model failed on rows of shape {list(xb.shape[1:])}: {_first_line(e)}"
            ) from e
        if not isinstance(out, torch.Tensor):
            raise TrainingFailed("the model must return one tensor")
        return out

    def _dry_run(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) == 0:
            raise TrainingDataError("no rows to train on")
        with torch.no_grad():
            buffers = self._save_buffers(module)
            out = self._forward(module, x[: min(2, len(x))].to(self.device))
            self._restore_buffers(module, buffers)
        yb = y[: len(out)].to(self.device)
        if self.plan.loss == "cross_entropy":
            if out.dim() < 2:
                raise TrainingFailed(
                    f"cross_entropy needs one score per class; the model outputs "
                    f"{list(out.shape[1:])} per row"
                )
            top = int(y.max()) if len(y) else 0
            if top >= out.shape[1]:
                raise TrainingFailed(
                    f"some labels are class numbers past the {out.shape[1]} class scores the "
                    "model outputs"
                )
        try:
            self._loss(out, self._targets(out, yb))
        except TrainingFailed:
            raise
        except Exception as e:
            raise TrainingFailed(
                f"the model's output {list(out.shape[1:])} per row does not fit the "
                f"{self.plan.loss} loss with labels {list(y.shape[1:])}: {_first_line(e)}"
            ) from e

    # -- the loop ---------------------------------------------------------------------------

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        p = self.plan
        if p.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay
            )
        if p.optimizer == "adam":
            return torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay)
        return torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)

    def _step_event(self, epoch: int, step: int, steps: int, loss: float) -> None:
        now = time.monotonic()
        if now - self.last_step_event >= STEP_EVENT_INTERVAL:
            self.last_step_event = now
            self.progress(
                phase="step",
                epoch=epoch,
                epochs=self.plan.epochs,
                step=step,
                steps_per_epoch=steps,
                loss=loss,
            )

    def _check_loss(self, value: float, epoch: int, step: int) -> None:
        if not math.isfinite(value):
            raise TrainingFailed(
                f"the loss became {value} at epoch {epoch}, step {step}: lower the learning "
                "rate or check the data for extreme values"
            )

    def _epoch_metrics(
        self, module: nn.Module, stats: _Epoch, x_val: torch.Tensor, y_val: torch.Tensor
    ) -> dict[str, Any]:
        metrics: dict[str, Any] = {"loss": stats.loss_sum / max(stats.samples, 1)}
        if self.accuracy:
            metrics["accuracy"] = stats.correct / max(stats.samples, 1)
        if len(x_val):
            metrics.update(self._validate(module, x_val, y_val))
        return metrics

    def _cancelled(self, epoch: int, step: int) -> TrainingOutcome:
        self.log(f"cancelled at epoch {epoch}, step {step}", private=True)
        return TrainingOutcome(status="cancelled", reason="cancelled")

    def _train(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
    ) -> TrainingOutcome:
        plan = self.plan
        params = list(module.parameters())
        optimizer = self._optimizer(params)
        mu = self.spec.proximal_mu
        anchor = [p.detach().clone() for p in params] if mu > 0 else []
        generator = torch.Generator().manual_seed(plan.seed)
        x, y = x.to(self.device), y.to(self.device)
        n = len(x)
        steps = math.ceil(n / plan.batch_size)
        total_steps = 0
        metrics: dict[str, Any] = {}
        for epoch in range(1, plan.epochs + 1):
            stats = _Epoch()
            order = torch.randperm(n, generator=generator).to(self.device)
            for step in range(1, steps + 1):
                if self.should_stop():
                    return self._cancelled(epoch, step)
                idx = order[(step - 1) * plan.batch_size : step * plan.batch_size]
                xb, yb = x[idx], y[idx]
                out = self._forward(module, xb)
                target = self._targets(out, yb)
                loss = self._loss(out, target)
                value = loss.item()
                self._check_loss(value, epoch, step)
                optimizer.zero_grad(set_to_none=True)
                if anchor:
                    # FedProx: keep the local model near the round's global one.
                    drift = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                    loss = loss + mu / 2 * drift
                loss.backward()
                optimizer.step()
                total_steps += 1
                stats.loss_sum += value * len(idx)
                stats.samples += len(idx)
                if self.accuracy:
                    stats.correct += self._correct(out.detach(), target)
                self._step_event(epoch, step, steps, value)
            metrics = self._epoch_metrics(module, stats, x_val, y_val)
            self._epoch_event(epoch, steps, metrics)
        return self._completed(metrics, total_steps, n, len(x_val))

    def _epoch_event(self, epoch: int, steps: int, metrics: dict[str, Any]) -> None:
        self.progress(
            phase="epoch",
            epoch=epoch,
            epochs=self.plan.epochs,
            step=steps,
            steps_per_epoch=steps,
            seconds=round(time.monotonic() - self.started, 3),
            **metrics,
        )

    def _completed(
        self, metrics: dict[str, Any], steps: int, samples: int, val_samples: int
    ) -> TrainingOutcome:
        final = dict(metrics)
        final.update(
            epochs=self.plan.epochs,
            steps=steps,
            samples=samples,
            validation_samples=val_samples,
            seconds=round(time.monotonic() - self.started, 3),
        )
        self.log(f"finished {self.plan.epochs} epoch(s), {steps} steps", private=True)
        return TrainingOutcome(status="completed", metrics=final)

    # -- validation in eval mode ------------------------------------------------------------

    def _training_flag_nodes(self, module: Any) -> list[tuple[Any, int]]:
        nodes = []
        for node in module.graph.nodes:
            target = node.target
            if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
                continue
            index = _TRAINING_FLAGS.get(target._schema.name.partition("::")[2])
            if index is not None and len(node.args) > index and isinstance(node.args[index], bool):
                nodes.append((node, index))
        return nodes

    def _set_training(self, module: Any, training: bool) -> None:
        if not self.flags:
            return
        for node, index in self.flags:
            args = list(node.args)
            args[index] = training
            node.args = tuple(args)
        module.recompile()

    def _save_buffers(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: b.detach().clone() for k, b in module.named_buffers()}

    def _restore_buffers(self, module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, b in module.named_buffers():
                b.copy_(saved[k])

    def _check_buffers(
        self, module: nn.Module, submitted: dict[str, torch.Tensor], changeable: list[str]
    ) -> None:
        # Defence in depth: whatever the graph checks missed, a buffer that left training
        # different from the submitted weights and may not change withholds the whole result.
        for name, buffer in module.named_buffers():
            before = submitted[name]
            after = buffer.detach().to("cpu")
            same = torch.equal(after, before) or (
                after.is_floating_point()
                and torch.allclose(after, before, rtol=0.0, atol=0.0, equal_nan=True)
            )
            if name not in changeable and not same:
                raise TrainingFailed(
                    f"training changed the model's buffer {name!r}, which it may not change"
                    + (" under differential privacy" if self.plan.dp is not None else "")
                    + ": the result is withheld"
                )

    def _validate(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        stats = _Epoch()
        saved = self._save_buffers(module)
        self._set_training(module, False)
        try:
            with torch.no_grad():
                for start in range(0, len(x), self.plan.batch_size):
                    xb = x[start : start + self.plan.batch_size].to(self.device)
                    yb = y[start : start + self.plan.batch_size].to(self.device)
                    out = self._forward(module, xb)
                    target = self._targets(out, yb)
                    stats.loss_sum += self._loss(out, target).item() * len(xb)
                    stats.samples += len(xb)
                    if self.accuracy:
                        stats.correct += self._correct(out, target)
        finally:
            self._set_training(module, True)
            self._restore_buffers(module, saved)
        result = {"val_loss": stats.loss_sum / max(stats.samples, 1)}
        if self.accuracy:
            result["val_accuracy"] = stats.correct / max(stats.samples, 1)
        return result

    # -- differential privacy ---------------------------------------------------------------

    def _train_dp(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
    ) -> TrainingOutcome:
        # Opacus pulls in SciPy: seconds that only DP jobs need to spend.
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.data_loader import DPDataLoader
        from opacus.optimizers import DPOptimizer

        plan = self.plan
        dp = plan.dp
        assert dp is not None
        graph: Any = module.graph
        if any("batch_norm" in str(node.target) for node in graph.nodes):
            raise TrainingFailed(
                "differential privacy cannot train batch normalization, which mixes the rows "
                "of a batch: use GroupNorm or LayerNorm instead"
            )
        loader = DataLoader(TensorDataset(x, y), batch_size=plan.batch_size)
        # Sampling and noise are what DP rests on: both from OS entropy, never from plan.seed.
        dp_loader = DPDataLoader.from_data_loader(loader, generator=os_entropy_generator())
        sample_rate = dp_loader.sample_rate
        steps = len(dp_loader)
        expected_batch = max(1, round(len(x) * sample_rate))
        # The budget covers the whole job: every epoch of every round of a federated job.
        job_steps = self.spec.dp_rounds * plan.epochs * steps
        # Opacus' notes on the range of RDP orders say nothing a job's author can act on.
        with _quiet():
            sigma = get_noise_multiplier(
                target_epsilon=dp.epsilon,
                target_delta=dp.delta,
                sample_rate=sample_rate,
                steps=job_steps,
                accountant="rdp",
            )
        optimizer = DPOptimizer(
            self._optimizer(list(module.parameters())),
            noise_multiplier=sigma,
            max_grad_norm=dp.max_grad_norm,
            expected_batch_size=expected_batch,
            generator=os_entropy_generator(self.device),
            # Each noise value is a sum of Gaussians, against floating-point attacks on the
            # low bits of one sample (Opacus' secure mode; its CSPRNG, torchcsprng, does not
            # build for this torch, so the generators above are seeded from the OS instead).
            secure_mode=True,
        )
        accountant = RDPAccountant()
        if self.spec.dp_rounds_spent:
            # One accountant for the job: this domain's earlier rounds ran at the same sigma
            # and sampling rate, so their steps go in as one entry of its history.
            spent_steps = self.spec.dp_rounds_spent * plan.epochs * steps
            accountant.history.append((sigma, sample_rate, spent_steps))
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
        if self.spec.dp_rounds > 1:
            self.log(
                f"DP-SGD: the noise covers all {self.spec.dp_rounds} rounds of "
                f"{plan.epochs} epoch(s); {self.spec.dp_rounds_spent} round(s) spent before this"
            )
        self.log(
            f"DP-SGD: noise multiplier sigma={sigma:.4f}, clipping norm {dp.max_grad_norm}, "
            f"sampling rate {sample_rate:.4f}, target epsilon={dp.epsilon} at delta={dp.delta}",
            private=True,  # the sampling rate is the batch size over the row count
        )
        self.log(RANDOMNESS_NOTE)

        named: dict[str, Any] = dict(module.named_parameters())  # Any: Opacus adds grad_sample
        buffers = dict(module.named_buffers())
        loss_fn = self._loss
        targets_fn = self._targets

        def loss_one(
            params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(module, (params, buffers), (xi.unsqueeze(0),))
            return loss_fn(out, targets_fn(out, yi.unsqueeze(0))), out.squeeze(0)

        per_sample = vmap(
            grad_and_value(loss_one, has_aux=True), in_dims=(None, 0, 0), randomness="different"
        )
        total_steps = 0
        metrics: dict[str, Any] = {}
        for epoch in range(1, plan.epochs + 1):
            stats = _Epoch()
            for step, (xb, yb) in enumerate(dp_loader, start=1):
                if self.should_stop():
                    return self._cancelled(epoch, step)
                xb, yb = xb.to(self.device), yb.to(self.device)
                if len(xb):
                    params = {k: p.detach() for k, p in named.items()}
                    try:
                        grads, (losses, outs) = per_sample(params, xb, yb)
                    except Exception as e:
                        if is_out_of_memory(e):
                            raise
                        raise TrainingFailed(
                            f"per-sample gradients failed on rows of shape {list(xb.shape[1:])}: "
                            f"{_first_line(e)}"
                        ) from e
                    value = float(losses.mean())
                    self._check_loss(value, epoch, step)
                    for k, p in named.items():
                        p.grad_sample = grads[k]  # what DPOptimizer clips
                    stats.loss_sum += float(losses.sum())
                    stats.samples += len(xb)
                    if self.accuracy:
                        stats.correct += self._correct(outs, targets_fn(outs, yb))
                else:  # Poisson sampling drew no row: the step still adds noise
                    value = float("nan")
                    for p in named.values():
                        empty = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
                        p.grad_sample = empty
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                total_steps += 1
                if len(xb):
                    self._step_event(epoch, step, steps, value)
            metrics = self._epoch_metrics(module, stats, x_val, y_val)
            with _quiet():
                metrics["epsilon"] = accountant.get_epsilon(delta=dp.delta)
            self._epoch_event(epoch, steps, metrics)
        for p in named.values():
            p.grad_sample = None
        outcome = self._completed(metrics, total_steps, len(x), len(x_val))
        outcome.metrics.update(
            epsilon=metrics["epsilon"],
            delta=dp.delta,
            noise_multiplier=sigma,
            max_grad_norm=dp.max_grad_norm,
        )
        self.log(
            f"DP-SGD: spent epsilon={outcome.metrics['epsilon']:.3f} at delta={dp.delta}",
            private=True,
        )
        return outcome


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(e: BaseException) -> str:
    """The error's first line, numbers masked: it was raised on private rows."""
    return redacted(str(e).strip() or type(e).__name__)
