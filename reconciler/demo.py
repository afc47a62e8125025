"""`reconciler demo`: simulator + service + traffic on this machine, scored."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--payments", type=int, default=300)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("the demo is not built yet")
