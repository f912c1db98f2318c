"""Helpers the network's blueprints share."""

from __future__ import annotations

from flask import current_app

from grid_common.identity import NodeIdentity
from network.config import NetworkConfig


def config() -> NetworkConfig:
    cfg: NetworkConfig = current_app.config["GRID"]
    return cfg


def identity() -> NodeIdentity:
    node: NodeIdentity = current_app.extensions["identity"]
    return node
