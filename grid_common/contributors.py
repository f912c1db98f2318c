"""The fewest domains whose data one joint result may hold, for training and analytics alike.

Path 5 of the threat model: an aggregate of two lets each domain subtract its own part and read
the other's; so an aggregate reaches the domains only when at least this many contributed,
unless each domain's part is differentially private on its own.
"""

MIN_CONTRIBUTORS = 3
