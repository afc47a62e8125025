"""The project's own flaky payment gateway: faults on demand, ground truth kept, calls counted."""

from reconciler.simulator.app import create_app
from reconciler.simulator.config import SimConfig

__all__ = ["SimConfig", "create_app"]
