"""Run the simulator: `python -m reconciler.simulator [options]`."""

import argparse
import sys

from reconciler.simulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.simulator")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
