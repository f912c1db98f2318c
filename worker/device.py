"""Which torch device a worker trains on: `cpu` (the default), `cuda`, `cuda:N` or `auto`.

Checked once when the worker starts, so an operator who asked for a GPU the machine lacks is
told at once instead of finding jobs quietly trained on the CPU.
"""

from __future__ import annotations

import re

import torch

CHOICES = "cpu, cuda, cuda:N or auto"


class DeviceError(ValueError):
    """The device asked for does not exist here; the message says what to run instead."""


def resolve_device(name: str) -> str:
    """The device a worker's training child uses for `name`: `auto` is cuda when a GPU
    answers, else cpu; `cuda` and `cuda:N` must exist on this machine."""
    name = name.strip().lower()
    if name == "cpu":
        return name
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    found = re.fullmatch(r"cuda(?::(\d+))?", name)
    if found is None:
        raise DeviceError(f"unknown device {name!r}: use {CHOICES}")
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise DeviceError(
            f"no CUDA device: torch.cuda.is_available() is false here (torch {torch.__version__}, "
            f"CUDA {built}); start the worker with --device cpu, or on a machine with an NVIDIA "
            "GPU, its driver and a CUDA build of torch"
        )
    index = int(found.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"no CUDA device {index}: this machine has {count} (cuda:0 to cuda:{count - 1})"
        )
    return name
