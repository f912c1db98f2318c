"""`grid worker start --device`: a GPU asked for must exist, and trains as the CPU does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from torch import nn

from grid_cli.commands.app import main
from grid_common.model_archive import save_for_training
from worker.device import DeviceError, resolve_device
from worker.spec import DataFile
from worker.training import train

from .training_jobs import make_spec

NO_GPU = not torch.cuda.is_available()


def test_cpu_is_the_default_and_auto_falls_back_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device(" CPU ") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match=r"^no CUDA device: .*--device cpu"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(DeviceError, match=r"no CUDA device 1: this machine has 1"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU, so the worker would start")
def test_grid_worker_start_refuses_cuda_without_a_gpu() -> None:
    args = ["worker", "start", "--domain", "http://127.0.0.1:9", "--token", "t", "--device", "cuda"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "Error: no CUDA device: torch.cuda.is_available() is false" in result.output


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.out = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.conv(x / 255))).flatten(1))


def _exported(folder: Path, model: nn.Module, example: tuple[int, ...]) -> dict[str, Path]:
    torch.manual_seed(0)
    archive, weights = folder / "cnn.pt2", folder / "cnn.safetensors"
    save_for_training(model, torch.randn(*example), archive)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    return {"model_path": archive, "weights_path": weights}


@pytest.mark.skipif(NO_GPU, reason="needs an NVIDIA GPU (torch.cuda.is_available() is false)")
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_seeded_job_trains_to_the_same_weights_on_cuda_as_on_cpu(
    tmp_path: Path, model: str
) -> None:
    if model == "cnn":
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (256, 1, 8, 8), dtype=np.uint8)
        np.savez(tmp_path / "images.npz", image=images, label=(images.mean(axis=(1, 2, 3)) > 127))
        data = [DataFile(tmp_path / "images.npz", "npz", "label")]
        spec = make_spec(tmp_path / "job", data=data, optimizer="sgd", lr=0.05)
        spec = dataclasses.replace(spec, **_exported(tmp_path, SmallCNN(), (4, 1, 8, 8)))
    else:
        spec = make_spec(tmp_path / "job", optimizer="sgd", lr=0.05)
    weights = {}
    for device in ("cpu", "cuda"):
        run = dataclasses.replace(spec, device=device, output_dir=tmp_path / device)
        outcome = train(run, lambda event: None, lambda: False)
        assert outcome.status == "completed", outcome.reason
        weights[device] = load_file(str(outcome.weights_path))
    for name, on_cpu in weights["cpu"].items():
        torch.testing.assert_close(weights["cuda"][name], on_cpu, rtol=1e-3, atol=1e-4)
