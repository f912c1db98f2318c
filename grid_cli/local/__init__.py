"""A whole grid on one machine: the state file, process supervision, node launches and the demo."""
