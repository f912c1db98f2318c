"""Grid worker: leases jobs from its domain and trains next to the data in a limited child."""
