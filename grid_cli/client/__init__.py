"""The data scientist's SDK: clients for domains and networks, jobs, federated jobs, analytics.

Everything here talks to nodes over HTTP through `grid_common.transport`; nothing here starts a
node or a worker. Public names are re-exported by `grid_cli` itself (`import grid_cli as grid`).
"""
