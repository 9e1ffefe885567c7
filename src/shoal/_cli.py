"""The ``shoal`` command (also ``python -m shoal``). Uses the public API only.

``shoal demo [--time-scale X | --real-time]`` runs the multiprocessing tutorial's four examples on
shoal.Pool; ``shoal demo --help`` lists its options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import shoal

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="shoal: a drop-in multiprocessing.Pool and concurrent.futures that never "
        "gets stuck.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {shoal.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The demo parses its own options (run_demo(argv)); add_help=False passes --help on to it.
    sub.add_parser(
        "demo",
        add_help=False,
        help="run the multiprocessing tutorial's four examples on shoal.Pool",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shoal`` command; returns its exit status.

    Args:
        argv: the arguments (None: ``sys.argv[1:]``).
    """
    args, rest = _parser().parse_known_args(list(argv) if argv is not None else sys.argv[1:])
    if args.command == "demo":
        from shoal._demo import run_demo

        return run_demo(rest)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
