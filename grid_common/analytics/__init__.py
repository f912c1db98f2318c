"""Federated analytics: exact statistics and models from encrypted sums of sufficient statistics.

`plan` says what an analysis computes and how its vector of sums is laid out, `compatibility`
checks a request against the datasets' published schemas, `compute` makes one domain's sums
and turns the decrypted total into what is released, and `privacy` holds the disclosure
controls (minimum group size, distributed Gaussian noise).
"""
