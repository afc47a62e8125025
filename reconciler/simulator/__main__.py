"""Run the simulator: `python -m reconciler.simulator [options]`."""

from reconciler.simulator.cli import simulator

if __name__ == "__main__":
    simulator(prog_name="python -m reconciler.simulator")
