"""Reconciler: keep every payment's status right despite unreliable gateways."""

__version__ = "0.1.0"
