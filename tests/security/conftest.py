"""Attack tests: each one tries, as an attacker would, a path that must stay closed.

Fixtures of other test packages are imported by the test modules that need them.
"""
