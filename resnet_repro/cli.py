"""The ``resnet-repro`` command line: one subcommand per user task, each a thin layer over the
library (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from resnet_repro import __version__


def run_fetch(args: argparse.Namespace) -> int:
    from resnet_repro.data import OFFICIAL_MD5, OFFICIAL_URL, DataError, fetch_cifar10

    try:
        batches = fetch_cifar10(
            args.dest,
            url=args.url or OFFICIAL_URL,
            md5=args.md5 or OFFICIAL_MD5,
            archive=args.archive,
            progress=sys.stderr.isatty(),
        )
    except DataError as e:
        print(f"resnet-repro fetch: error: {e}", file=sys.stderr)
        return 1
    print(f"CIFAR-10 ready at {batches}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-repro",
        description="Reproduce the ResNet v1/v2 CIFAR-10 study: fetch data, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    fetch = commands.add_parser(
        "fetch",
        help="download (or copy) CIFAR-10, verify its md5 and extract it safely",
        description="Download or copy cifar-10-python.tar.gz into DEST, verify it, extract it.",
    )
    fetch.add_argument("--dest", type=Path, default=Path("data"), help="target folder (data/)")
    source = fetch.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path, help="a local copy of the archive")
    source.add_argument("--url", help="a mirror's URL (http(s) or file://)")
    fetch.add_argument("--md5", help="the archive's md5 when it is not the official one")
    fetch.set_defaults(run=run_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
