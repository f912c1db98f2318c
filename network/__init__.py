"""Grid network node: domains join it, it indexes their public metadata, answers search and
routes data scientists to domains."""

from network.app import create_app
from network.config import NetworkConfig

__all__ = ["NetworkConfig", "create_app"]
