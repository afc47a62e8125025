"""`reconciler demo`: simulator + service + traffic on this machine, scored.

The demo starts the gateway simulator and `reconciler serve` as two subprocesses on free
loopback ports (SQLite in a temporary directory, a fresh webhook secret), registers a
merchant endpoint served by the demo itself, creates payments through the merchant API,
injects the faults of the chosen profile (lost, duplicated and reordered webhooks, failing
polls, one outage; an endpoint answering 503s, too late, and down for a while) and waits
for the payments to settle and their notifications to be delivered. Then it scores the
run against the simulator's ground truth and the endpoint's verified receipts: a payment
whose terminal status differs from the gateway's is *wrong*, a status change that never
reached the endpoint with a valid signature is *lost*, and either makes the exit code 1.
"""

# This docstring is the command's --help description (the CLI passes it), so the layout is
# told here instead: one module per job, `profile` (what a run is), `stack` (the processes
# and their environment), `receiver` (the merchant endpoint), `traffic` (payments, the
# endpoint, waiting, the outage), `progress`, `scoring`, `report` (text), `plot` and `cli`.
# The benchmarks (`bench/`) reuse stack, traffic, scoring.

from reconciler.demo.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
