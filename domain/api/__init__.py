"""The domain's HTTP API, one blueprint per feature."""
