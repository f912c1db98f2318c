"""Fixtures the domain tests share: a small exported model with its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A 2-feature, 2-class MLP exported in train mode, and its weights as safetensors."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model.train()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.zeros(3, 2),), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("model") / "model.pt2"
    torch.export.save(program, path)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    return Path(path).read_bytes(), save_safetensors(weights)
