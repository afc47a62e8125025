"""Adapters: the database, the gateways, the simulator's client."""
