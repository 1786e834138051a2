"""Command line: python -m facecomp COMMAND (prepare, crop, train, sample, evaluate, compress, ...)."""

from __future__ import annotations

import argparse
import sys

from .cli import coding, data, measuring, training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecomp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (data, training, measuring, coding):
        group.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
