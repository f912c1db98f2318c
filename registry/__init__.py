"""Grid's registry: the GridRegistry contract, its web3 client, the outbox and a local chain.

Import the parts you need (`registry.client`, `registry.outbox`, `registry.sender`,
`registry.verify`, `registry.chain`); `registry.outbox` alone pulls in no web3.
"""
