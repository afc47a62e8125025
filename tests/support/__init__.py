"""Helpers the tests share: a fake clock, app wiring, PostgreSQL, the simulator, fake gateways."""
