"""The ``resnet-repro`` command line: one subcommand per user task, each a thin layer over the
library (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import sys

from resnet_repro import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-repro",
        description="Reproduce the ResNet v1/v2 CIFAR-10 study: fetch data, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
