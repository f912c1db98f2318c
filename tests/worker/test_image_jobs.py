"""An image dataset end to end: uploaded with `grid datasets upload` as a zip of PNGs, trained
on by a CNN through a live domain and a `grid worker start` process, the model accurate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.datasets import load_digits
from torch import nn

import grid_cli as grid
from grid_cli.commands.app import main
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.domain.image_zips import digits_zip, zip_bytes
from tests.models import ConvNet
from tests.worker.live import PLAN, StartWorker


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cnn_trains_on_an_image_dataset_uploaded_from_the_command_line(
    live_domain: str,
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    env = {"GRID_CONFIG_DIR": str(tmp_path / "config"), "GRID_URL": None, "GRID_PASSWORD": None}
    runner = CliRunner()

    def run_grid(*args: str, input: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    login = ("login", live_domain, "--email", OWNER_EMAIL, "--password-stdin")
    assert run_grid(*login, input=f"{OWNER_PASSWORD}\n")[0] == 0
    (tmp_path / "digits.zip").write_bytes(digits_zip(600))
    upload = ("datasets", "upload", "--no-progress")
    code, out, err = run_grid(
        *upload, str(tmp_path / "digits.zip"), "--name", "digits-images", "--json"
    )
    assert code == 0, err
    schema = json.loads(out)["schema"]
    assert (schema["input_shape"], schema["image_mode"], schema["row_count"]) == (
        [1, 8, 8],
        "L",
        600,
    )
    assert "1x8x8 (L images)" in run_grid("datasets", "show", "digits-images")[1]
    (tmp_path / "evil.zip").write_bytes(zip_bytes({"../evil.png": b"x"}))
    code, _, err = run_grid(*upload, str(tmp_path / "evil.zip"), "--name", "evil")
    assert code != 0 and "'../evil.png' has an unsafe path" in err and "422" in err
    assert "Traceback" not in err

    start_worker("w1")
    torch.manual_seed(0)
    model = ConvNet(lambda channels: nn.GroupNorm(2, channels))
    job = scientist.submit_training(model, dataset="digits-images", plan=PLAN, reason="digit CNN")
    owner.approve(job.id, reason="fine")
    job.wait(timeout=180, progress=False)
    assert job.info.status == "completed", job.logs()
    owner.release(job.id)
    trained = job.result()
    digits = load_digits()
    held_out = torch.tensor(digits.images[600:900], dtype=torch.float32).view(-1, 1, 8, 8)
    with torch.no_grad():
        predicted = trained(held_out).argmax(dim=1).numpy()
    accuracy = float(np.mean(predicted == digits.target[600:900]))
    assert accuracy > 0.8, accuracy
