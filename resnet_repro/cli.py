"""The ``resnet-repro`` command line: one subcommand per user task, each a thin layer over the
library (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path

from resnet_repro import __version__
from resnet_repro.checkpoint import CheckpointError
from resnet_repro.config import RECIPES, ConfigError, TrainConfig
from resnet_repro.data import DataError

USER_ERRORS = (ConfigError, DataError, CheckpointError, ValueError)


def fail(command: str, error: Exception) -> int:
    print(f"resnet-repro {command}: error: {error}", file=sys.stderr)
    return 1


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; None means 'not given' (recipe or file decides)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if f.name == "recipe":
            parser.add_argument(flag, choices=[*RECIPES, "custom"], help="named preset (paper)")
        elif hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif typing.get_origin(hint) is list:
            parser.add_argument(flag, type=int, nargs="+", metavar="N")
        else:
            parser.add_argument(flag, type=hint, metavar=f.name.upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from resnet_repro.config import make_config

    values = TrainConfig.load(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name)
        if given is not None:
            values[f.name] = given
    recipe = values.pop("recipe", "paper")
    if args.config is None:
        return make_config(recipe, **values)
    return TrainConfig.from_dict({"recipe": recipe, **values})


def run_train(args: argparse.Namespace) -> int:
    from resnet_repro.train import TrainingError, train

    try:
        config = config_from_args(args)
        train(config, args.out, resume=args.resume)
    except (*USER_ERRORS, TrainingError) as e:
        return fail("train", e)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from resnet_repro.evaluate import evaluate_run, parse_checkpoints

    try:
        epochs = parse_checkpoints(args.checkpoints)
        evaluate_run(args.run, epochs, split=args.split, data=args.data, device=args.device)
    except USER_ERRORS as e:
        return fail("evaluate", e)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from resnet_repro.evaluate import predict

    try:
        results = predict(args.checkpoint, args.images, device=args.device)
    except USER_ERRORS as e:
        return fail("predict", e)
    for image, ranked in zip(args.images, results, strict=True):
        top = ", ".join(f"{name} {p:.3f}" for name, p in ranked[: args.top])
        print(f"{image}: {top}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from resnet_repro.data import OFFICIAL_MD5, OFFICIAL_URL, fetch_cifar10

    try:
        batches = fetch_cifar10(
            args.dest,
            url=args.url or OFFICIAL_URL,
            md5=args.md5 or OFFICIAL_MD5,
            archive=args.archive,
            progress=sys.stderr.isatty(),
        )
    except DataError as e:
        return fail("fetch", e)
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
    fetch.set_defaults(handler=run_fetch)

    train = commands.add_parser(
        "train",
        help="train one run (recipe seed, paper or fast); every config field is an option",
        description="Train one ResNet; options override the recipe, which --config may replace.",
    )
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--config", type=Path, help="a YAML/JSON config (e.g. a run's config.yaml)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    add_config_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy of a run's checkpoints on the validation or test split",
        description="Evaluate RUN/model-{epoch}.ckpt for each epoch; writes RUN/eval-SPLIT.json.",
    )
    evaluate.add_argument("--run", type=Path, required=True, help="run directory")
    evaluate.add_argument("--checkpoints", default="160:200:10", help="START:STOP:STEP or a,b,c")
    evaluate.add_argument("--split", choices=["valid", "test", "train"], default="valid")
    evaluate.add_argument("--data", help="data location, if not the one the run recorded")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=run_evaluate)

    predict = commands.add_parser(
        "predict",
        help="class probabilities for image files",
        description="Classify image files (any size; resized to 32x32) with a checkpoint.",
    )
    predict.add_argument("--checkpoint", type=Path, required=True)
    predict.add_argument("--top", type=int, default=3, help="classes shown per image (3)")
    predict.add_argument("--device", default="auto")
    predict.add_argument("images", nargs="+")
    predict.set_defaults(handler=run_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
