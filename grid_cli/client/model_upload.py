"""The one step by which a client sends a model: check it on example rows, export it, upload it.

A domain's training job and a network's federated job both go through `upload_model`, so a
model that one would refuse the other refuses the same way, with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from requests import Response

from grid_cli.client.export import check_forward, dry_run, export_model, model_rows
from grid_cli.client.node import NodeClient
from grid_common.hashes import sha256_file
from grid_common.plan import TrainingPlan
from grid_common.transport import FormFields

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


@dataclass(frozen=True)
class SentModel:
    """The node's answer to an upload, and the digests of the two files it carried."""

    response: Response
    model_digest: str
    weights_digest: str


def upload_model(
    client: NodeClient,
    path: str,
    model: nn.Module,
    features: np.ndarray,
    plan: TrainingPlan,
    *,
    labels: np.ndarray | None,
    fields: FormFields,
    progress: bool | None,
) -> SentModel:
    """Check `model`, export it in train mode and POST it to `path` with the form `fields`.

    The rows are float32, or int64 for a model that takes integer ids (see `model_rows`).
    With `labels`, a few rows go through the model and the plan's loss, as a domain's worker
    will; without (a federated job: the domains' labels are unseen here), a batch goes
    through the model. The export is inspected as a node will, so what a node refuses fails
    here first. The program and its weights travel as the `model` and `weights` files.
    """
    features = model_rows(model, features)
    if labels is None:
        check_forward(model, features)
    else:
        dry_run(model, features, labels, plan)
    exported = export_model(model, features, dp=plan.dp is not None)
    with exported.folder:
        files = [("model", exported.program), ("weights", exported.weights)]
        response = client._upload(
            path, fields, files, progress=progress, description="Sending model"
        )
        return SentModel(response, sha256_file(exported.program), sha256_file(exported.weights))
