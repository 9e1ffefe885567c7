"""The ``shoal`` command. Uses the public API only."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal", description="shoal: parallel work that never gets stuck")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the tutorial's examples on shoal")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from shoal._demo import run_demo

        return run_demo()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
