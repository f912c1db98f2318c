"""The network's HTTP API, one blueprint per feature."""
