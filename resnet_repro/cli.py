"""The ``resnet-repro`` command line, a thin layer over the library (parsing and printing only),
in two groups: the user's commands (``fetch``, ``train``, ``evaluate``, ``predict``, ``pack``,
``compare``, ``project``, ``rehearse``, ``verify``, ``fake-archive``), each option with one
meaning; and
``stage ...``, the DVC pipeline's entry points that are not a user's command (``fit``,
``metrics``, ``report``, ``train-many``), which ``dvc.yaml`` calls (it calls ``fetch`` and
``compare`` as users do). No verb is in both groups. The developers' tools are nox sessions and
``.ci/`` scripts. A command's errors name it from its parser (``command``), never by a name
spelled in its handler.

Importing it imports no torch: ``--help`` and ``fetch`` start in a fraction of a second
(docs/measurements.md); each handler imports what its command needs.

A user's mistake (bad option, bad data, unusable checkpoint), raised by the library as one of
``USER_ERRORS``, ends in ``main`` with one line naming what was wrong and what to do, and exit
status 1; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import subprocess
import sys
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path

from resnet_repro import __version__
from resnet_repro.checkpoint import CheckpointError
from resnet_repro.cifar import DataError
from resnet_repro.config import (
    ConfigError,
    DataSettings,
    NetworkSettings,
    OptimizerSettings,
    RunSettings,
    TrainConfig,
    flag,
)
from resnet_repro.golden import GoldenError
from resnet_repro.recipes import DEFAULT_RECIPE, RECIPES
from resnet_repro.run_folder import RunFolderError

# The errors that mean "the user's input is wrong": each carries a message naming the input.
# (A certificate's errors are GoldenErrors.)
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunFolderError, GoldenError)
INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C


def fail(args: argparse.Namespace, error: Exception) -> int:
    print(f"resnet-repro {args.name}: error: {error}", file=sys.stderr)
    return 1


# What a resume makes of a field of each role (config.ROLES), said in its --help.
ROLE_NOTES = {
    "architecture": "; a checkpoint fits only its value",
    "length": "; --resume may change it unless the schedule depends on it",
    "runtime": "; --resume may change it",
    "experiment": "",
}


def config_option_help(f: dataclasses.Field) -> str:
    """A field's help with its default (one value, or each recipe's for a recipe setting) and
    what a resume makes of it."""
    if f.metadata["recipe"]:
        values = ", ".join(f"{name} {recipe[f.name]!r}" for name, recipe in RECIPES.items())
        default = f"recipe: {values}"
    else:
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = f"default: {value!r}"
    return f"{f.metadata['help']} ({default}{ROLE_NOTES[f.metadata['role']]})"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field, in a group per section of the config; None means
    'not given' (recipe or file decides)."""
    hints = typing.get_type_hints(TrainConfig)
    for section, title in (
        (NetworkSettings, "the network"),
        (OptimizerSettings, "the optimizer, its schedule and the run's length"),
        (DataSettings, "the data"),
        (RunSettings, "the run: recipe, seed, device and kernels, checkpoints"),
    ):
        group = parser.add_argument_group(
            title, "each overrides the recipe's value (or --config's)"
        )
        for f in dataclasses.fields(section):
            hint, choices, text = hints[f.name], f.metadata["choices"], config_option_help(f)
            # The network's version keeps its old spelling (--version) after the command.
            flags = (flag(f.name), "--version") if f.name == "version" else (flag(f.name),)
            if hint is bool:
                group.add_argument(
                    *flags, action=argparse.BooleanOptionalAction, default=None, help=text
                )
            elif typing.get_origin(hint) is list:
                group.add_argument(*flags, type=int, nargs="*", metavar="N", help=text)
            else:
                metavar = None if choices else f.name.upper()
                group.add_argument(
                    *flags, dest=f.name, type=hint, choices=choices, metavar=metavar, help=text
                )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from resnet_repro.config import make_config

    values = TrainConfig.load(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name)
        if given is not None:
            values[f.name] = given
    recipe = values.pop("recipe", DEFAULT_RECIPE)
    if args.config is None:
        return make_config(recipe, **values)
    return TrainConfig.from_dict({"recipe": recipe, **values})


def training_errors(args: argparse.Namespace, train: typing.Callable[[], object]) -> int:
    """Run ``train`` and turn what a user can cause into one line and an exit status."""
    from resnet_repro.train import TrainingError, TrainingInterrupted

    out = args.out
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; name a folder for the run")
        train()
    except TrainingInterrupted as e:
        fail(args, e)
        return INTERRUPTED
    except (*USER_ERRORS, TrainingError) as e:
        return fail(args, e)
    except OSError as e:  # a folder that cannot be written: read-only, /proc, a full disk
        where = e.filename or out
        advice = (
            "make the folder writable to continue its run"
            if (Path(out) / "last.ckpt").is_file()
            else "choose another --out"
        )
        reason = f"cannot write {where}: {e.strerror or e}; {advice}"
        return fail(args, OSError(reason))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from resnet_repro.train import train

    return training_errors(
        args,
        lambda: train(
            config_from_args(args), args.out, resume=args.resume, allow_changes=args.allow_changes
        ),
    )


def run_fit(args: argparse.Namespace) -> int:
    from resnet_repro.pipeline import train_grid_run

    return training_errors(args, lambda: train_grid_run(args.params, args.run, args.out))


def run_evaluate(args: argparse.Namespace) -> int:
    from resnet_repro.evaluate import evaluate_run, parse_checkpoints

    epochs = parse_checkpoints(args.checkpoints)
    evaluate_run(args.run, epochs, split=args.split, data=args.data, device=args.device)
    return 0


def run_metrics_stage(args: argparse.Namespace) -> int:
    from resnet_repro.pipeline import run_metrics

    m = run_metrics(args.run, args.checkpoints, args.metrics_dir, device=args.device)
    seeds = f" (mean of {len(m['seeds'])} seeds)" if "seeds" in m else ""
    rehearsal = " [rehearsal: values meaningless]" if m["rehearsal"] else ""
    print(
        f"{args.run}: final checkpoint valid {accuracy_text(m['valid_acc_final'])}, "
        f"test {accuracy_text(m['test_acc_final'])}{seeds}{rehearsal}"
    )
    return 0


def accuracy_text(value: float | None) -> str:
    """An accuracy for a line of output; a run without a validation split has none."""
    return "none (no validation split)" if value is None else f"{value:.4f}"


def run_compare(args: argparse.Namespace) -> int:
    from resnet_repro.golden import compare, markdown

    result = compare(args.golden, args.metrics_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(result)
    (args.out / "comparison.md").write_text(table)
    (args.out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    # The pipeline's stage records a failing cell as a result (comparison.json, the report)
    # and goes on (--exit-zero), so that a long run always ends with its report.
    return 0 if result["ok"] or args.exit_zero else 1


def run_report(args: argparse.Namespace) -> int:
    from resnet_repro.certificate import build_certificate, write_certificate
    from resnet_repro.config import load_params
    from resnet_repro.report import write_report

    try:
        params = load_params(args.params)
        tables = [Path(t) for t in str(params.get("compare", {}).get("golden", "")).split()]
        certificate = build_certificate(
            tables, args.runs_dir, args.metrics_dir, path=args.certificate
        )
        path = write_report(args.params, args.metrics_dir, args.comparison, args.out, certificate)
        write_certificate(certificate, args.certificate)
    except OSError as e:
        return fail(args, e)
    print(f"certificate written to {args.certificate}: {certificate['status']}")
    comparison = json.loads(args.comparison.read_text())
    verdict = "all cells pass" if comparison["ok"] else "FAILED: " + ", ".join(comparison["failed"])
    print(f"report written to {path}; comparison: {verdict}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from resnet_repro.certificate import verify

    failures = verify(args.certificate, device=args.device)
    if failures:
        return fail(args, RuntimeError(f"do not hold: {', '.join(failures)}"))
    print(f"{args.certificate}: every cell holds")
    return 0


def workdir_problem(folder: Path) -> ValueError | None:
    """Why ``folder`` cannot be a work folder (it must be empty or new), or None."""
    if folder.exists() and not folder.is_dir():
        return ValueError(f"--workdir {folder} is a file; name an empty or new folder")
    if folder.exists() and any(folder.iterdir()):
        return ValueError(f"--workdir {folder} is not empty; name an empty or new folder")
    return None


def run_rehearse(args: argparse.Namespace) -> int:
    from resnet_repro.study_clone import run_rehearsal

    if problem := workdir_problem(args.workdir):
        return fail(args, problem)
    if not args.repo.is_dir():
        return fail(args, ConfigError(f"--repo {args.repo}: no such folder; give the repository's"))
    uncommitted = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=args.repo,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    if uncommitted:
        print(
            f"note: the rehearsal runs the committed state of {args.repo}; its "
            f"{len(uncommitted)} uncommitted change(s) are not in it: commit them to "
            "rehearse them",
            file=sys.stderr,
        )
    seconds = run_rehearsal(args.repo.resolve(), args.workdir)
    print(
        f"Rehearsal complete: dvc repro ran every stage of the committed study in {seconds:.0f} s;"
        f" report (values meaningless): {args.workdir / 'results' / 'report' / 'report.md'}"
    )
    return 0


def run_train_runs(args: argparse.Namespace) -> int:
    from resnet_repro.config import load_params
    from resnet_repro.study_clone import train_runs_concurrently

    runs = args.runs or list(load_params(args.repo / "params.yaml")["runs"])
    status = train_runs_concurrently(args.repo, runs, jobs=args.jobs, devices=args.devices)
    failed = sorted(r for r, code in status.items() if code != 0)
    if failed:
        return fail(args, RuntimeError(f"failed: {', '.join(failed)} (see logs/)"))
    print(f"trained and recorded with dvc commit: {', '.join(runs)}; now run dvc repro")
    return 0


def run_project(args: argparse.Namespace) -> int:
    from resnet_repro.projection import project_grid, table

    projections = project_grid(args.params, runs=args.runs, device=args.device, steps=args.steps)
    print(table(projections))
    return 0


def run_fake_archive(args: argparse.Namespace) -> int:
    from resnet_repro.archive_writer import write_fake_cifar10
    from resnet_repro.cifar import md5_of

    try:
        path = write_fake_cifar10(
            args.path,
            train_per_batch=args.train_per_batch,
            test_size=args.test_size,
            seed=args.seed,
        )
    except OSError as e:  # a folder that does not exist or cannot be written
        return fail(args, e)
    print(f"{path} md5 {md5_of(path)}")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from resnet_repro.pack import pack_image_folder

    packed = pack_image_folder(
        args.folder, args.archive, test_fraction=args.test_fraction, seed=args.seed
    )
    print(
        f"{packed.path}: {packed.train_images} training and {packed.test_images} test images "
        f"of {len(packed.classes)} classes; md5 {packed.md5}"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from resnet_repro.evaluate import predict

    results = predict(args.checkpoint, args.images, device=args.device)
    for image, ranked in zip(args.images, results, strict=True):
        top = ", ".join(f"{name} {p:.3f}" for name, p in ranked[: args.top])
        print(f"{image}: {top}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from resnet_repro.cifar import OFFICIAL_MD5, OFFICIAL_URL
    from resnet_repro.data import check_batches
    from resnet_repro.download import Download
    from resnet_repro.fetch import fetch_cifar10

    is_url = args.source is None or "://" in args.source
    url, archive = (args.source, None) if is_url else (None, Path(args.source))
    # The library warns about data other than the official archive; a user reads it as
    # one line of the command's, not as a Python warning with a source line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = fetch_cifar10(
            args.dest,
            url=url or OFFICIAL_URL,
            md5=args.md5 or OFFICIAL_MD5,
            archive=archive,
            download=Download(progress=sys.stderr.isatty()),
            check=functools.partial(check_batches, name=str(archive or url)),
        )
    for warning in caught:
        print(f"resnet-repro {args.name}: note: {warning.message}", file=sys.stderr)
    print(f"CIFAR-10 ready at {batches}")
    return 0


def command(
    group: argparse._SubParsersAction, name: str, handler: typing.Callable, help: str, **kwargs
) -> argparse.ArgumentParser:
    """A subcommand whose handler and full name (e.g. ``stage fit``) its errors name."""
    parser = group.add_parser(name, help=help, **kwargs)
    full = f"{group._prog_prefix.removeprefix('resnet-repro').strip()} {name}".strip()
    parser.set_defaults(handler=handler, name=full, parser=parser)
    return parser


def add_user_commands(commands: argparse._SubParsersAction) -> None:
    fetch = command(
        commands,
        "fetch",
        run_fetch,
        "download (or copy) CIFAR-10, verify its md5 and extract it safely",
        description="Download or copy cifar-10-python.tar.gz into DEST, verify it, extract it.",
    )
    fetch.add_argument("--dest", type=Path, default=Path("data"), help="target folder (data/)")
    fetch.add_argument(
        "--source",
        "--archive",
        "--url",
        dest="source",
        help="a local copy of the archive or a mirror's URL (http(s) or file://); default: the "
        "official URL (params.yaml's data.source in the pipeline)",
    )
    fetch.add_argument("--md5", help="the archive's md5 when it is not the official one")

    train = command(
        commands,
        "train",
        run_train,
        "train one run (recipe seed, paper or fast); every config field is an option",
        description="Train one ResNet; options override the recipe, which --config may replace.",
    )
    train.add_argument("--out", type=Path, required=True, help="the run folder to write")
    train.add_argument("--config", type=Path, help="a YAML/JSON config (e.g. a run's config.yaml)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.ckpt; settings must equal the run's (OUT/config.yaml)",
    )
    train.add_argument(
        "--allow-changes",
        action="store_true",
        help="let --resume change settings that alter the experiment; each change is "
        "recorded in OUT/provenance.json",
    )
    add_config_arguments(train)

    evaluate = command(
        commands,
        "evaluate",
        run_evaluate,
        "accuracy of a run's checkpoints on the validation or test split",
        description="Evaluate RUN/model-{epoch}.ckpt for each epoch; writes RUN/eval-SPLIT.json.",
    )
    evaluate.add_argument("--run", type=Path, required=True, help="the run folder")
    evaluate.add_argument(
        "--checkpoints",
        default="160:200:10",
        help="epochs: START:STOP:STEP or a,b,c (default 160:200:10, the seed's)",
    )
    evaluate.add_argument("--split", choices=["valid", "test", "train"], default="valid")
    evaluate.add_argument("--data", help="data location, if not the one the run recorded")
    evaluate.add_argument("--device", default="auto")

    predict = command(
        commands,
        "predict",
        run_predict,
        "class probabilities for image files",
        description="Classify image files (any size; resized to 32x32) with a checkpoint.",
    )
    predict.add_argument("--checkpoint", type=Path, required=True)
    predict.add_argument(
        "--top", type=positive_int, default=3, help="classes shown per image (default 3)"
    )
    predict.add_argument("--device", default="auto")
    predict.add_argument("images", nargs="+")

    fake = command(
        commands,
        "fake-archive",
        run_fake_archive,
        "write a fake CIFAR-10 archive (official format, learnable synthetic images) to try "
        "the commands",
        description="Write a byte-reproducible fake cifar-10-python.tar.gz for tests and demos.",
    )
    fake.add_argument("path", type=Path)
    fake.add_argument(
        "--train-per-batch",
        type=batch_images,
        default=100,
        help="images per training batch (1 to 10,000, the official archive's)",
    )
    fake.add_argument(
        "--test-size", type=batch_images, default=100, help="test images (1 to 10,000)"
    )
    fake.add_argument("--seed", type=non_negative_int, default=0)

    pack = command(
        commands,
        "pack",
        run_pack,
        "pack a folder of class-named 32x32 images into an official-format archive",
        description="Pack FOLDER/<class>/*.png|jpg (ten classes of 32x32 images) into ARCHIVE "
        "in CIFAR-10's official format, with a seeded split of each class into training and "
        "test images; prints the archive's md5 (train with --data ARCHIVE).",
    )
    pack.add_argument("folder", type=Path, help="the folder of class folders")
    pack.add_argument("archive", type=Path, help="the archive to write (.tar.gz)")
    pack.add_argument(
        "--test-fraction",
        type=float,
        default=1 / 6,
        help="share of each class held out as test images (default 1/6, as 10k of 60k)",
    )
    pack.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the split (default 0)"
    )

    compare = command(
        commands,
        "compare",
        run_compare,
        "compare runs' metrics with golden tables; exit 1 when a cell fails or is missing",
        description="Compare METRICS_DIR/<run>/metrics.json with each golden table; writes "
        "OUT/comparison.md and OUT/comparison.json.",
    )
    compare.add_argument("--golden", type=Path, nargs="+", required=True)
    compare.add_argument("--metrics-dir", type=Path, required=True)
    compare.add_argument(
        "--out", type=Path, required=True, help="the folder to write comparison.md/.json into"
    )
    compare.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whatever the verdict, which comparison.json records (the pipeline's stage)",
    )

    project = command(
        commands,
        "project",
        run_project,
        "project how long the grid of params.yaml takes on this machine (run it before dvc repro)",
        description="Time a few training steps (the loader's batches and the optimizer steps) "
        "and an evaluation batch of each distinct network of the grid on this machine "
        "(synthetic images), and project each run's and the whole grid's duration from them "
        "(compilation and data loading excluded).",
    )
    project.add_argument("--params", type=Path, default=Path("params.yaml"), help="the grid")
    project.add_argument("--runs", nargs="+", help="runs to project (default: all)")
    project.add_argument("--device", help="measure on this device (default: each run's)")
    project.add_argument(
        "--steps", type=positive_int, default=6, help="timed steps per network (default 6)"
    )

    rehearse = command(
        commands,
        "rehearse",
        run_rehearse,
        "rehearse the committed study: dvc repro of params.yaml with amounts shrunk "
        "(minutes), before spending GPU hours",
        description="git clone the repository (its committed state) into WORKDIR, apply "
        "pipeline/rehearsal.yaml (a fake 50,000-image archive, 2 images per step, 1 step per "
        "epoch, 10 images per evaluated split: amounts only) to its params.yaml, run dvc repro "
        "there and check that every run has metrics and the report every cell. Its values "
        "mean nothing; its report says REHEARSAL.",
    )
    rehearse.add_argument("--workdir", type=Path, required=True, help="an empty or new folder")
    rehearse.add_argument("--repo", type=Path, default=Path("."), help="the repository (.)")

    verify = command(
        commands,
        "verify",
        run_verify,
        "check a results certificate: checkpoints' sha256, accuracies re-evaluated, verdicts "
        "re-derived",
        description="Check every cell of CERTIFICATE (run from the repository it was written "
        "in): each checkpoint's sha256, the data's md5, each seed's accuracy re-evaluated "
        "(exactly on the device type that measured it, otherwise within 1 image per 1,000), "
        "the runs' metrics.json, the golden tables, the statistics and verdicts re-derived. "
        "One line per cell; exit 1 naming the cells that do not hold.",
    )
    verify.add_argument(
        "certificate",
        type=Path,
        nargs="?",
        default=Path("results/certificate.json"),
        help="the certificate (default results/certificate.json)",
    )
    verify.add_argument("--device", default="auto", help="re-evaluate on this device")


def add_stage_commands(stages: argparse._SubParsersAction) -> None:
    train = command(
        stages,
        "fit",
        run_fit,
        "a train stage: train one run of params.yaml, all settings from it",
        description="Train (or continue) the run RUN of PARAMS into OUT; a killed stage "
        "continues from its last checkpoint when config, code and data are unchanged.",
    )
    train.add_argument("--params", type=Path, default=Path("params.yaml"), help="the grid")
    train.add_argument("--run", required=True, help="the run (its key under 'runs')")
    train.add_argument("--out", type=Path, required=True, help="the run folder to write")

    evaluate = command(
        stages,
        "metrics",
        run_metrics_stage,
        "an evaluate stage: a run's metrics for the comparison",
        description="Validate a run's checkpoints, test the chosen and final ones, and write "
        "METRICS_DIR/metrics.json and METRICS_DIR/history.csv.",
    )
    evaluate.add_argument("--run", type=Path, required=True, help="the run folder")
    evaluate.add_argument("--checkpoints", required=True, help="epochs: START:STOP:STEP or a,b,c")
    evaluate.add_argument("--metrics-dir", type=Path, required=True)
    evaluate.add_argument("--device", default="auto")

    report = command(
        stages,
        "report",
        run_report,
        "the report stage: OUT/report.md with tables and plots",
        description="Accuracy tables and learning-curve plots of the pipeline's runs.",
    )
    report.add_argument("--params", type=Path, default=Path("params.yaml"))
    report.add_argument("--metrics-dir", type=Path, required=True)
    report.add_argument("--comparison", type=Path, required=True)
    report.add_argument("--out", type=Path, required=True, help="the folder to write")
    report.add_argument("--runs-dir", type=Path, default=Path("runs"), help="the run folders")
    report.add_argument(
        "--certificate",
        type=Path,
        default=Path("results/certificate.json"),
        help="the certificate to write (default results/certificate.json)",
    )

    many = command(
        stages,
        "train-many",
        run_train_runs,
        "run several train stages at once (e.g. K runs sharing one GPU), then record them "
        "with dvc commit",
        description="Run the train stage command of each run (exactly dvc.yaml's), JOBS at a "
        "time, each logging to logs/train-RUN.log; record each that succeeded with dvc commit, "
        "so a following dvc repro evaluates it and trains only what is left. Run in the "
        "repository, after dvc repro fetch.",
    )
    many.add_argument("--runs", nargs="+", help="runs of params.yaml (default: all)")
    many.add_argument("--jobs", type=positive_int, default=2, help="processes at once (default 2)")
    many.add_argument(
        "--devices", nargs="+", help="GPUs to spread the processes over (CUDA_VISIBLE_DEVICES)"
    )
    many.add_argument("--repo", type=Path, default=Path("."), help="the repository (.)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-repro",
        description="Reproduce the ResNet v1/v2 CIFAR-10 study: fetch data, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_user_commands(commands)
    stage = commands.add_parser(
        "stage",
        help="the DVC pipeline's stages (dvc.yaml calls them; run dvc repro instead)",
        description="The entry points dvc.yaml's stages call; each takes its settings from "
        "params.yaml or the stage's command.",
    )
    add_stage_commands(stage.add_subparsers(dest="stage", metavar="STAGE", required=True))
    return parser


@contextlib.contextmanager
def messages_shown() -> Iterator[None]:
    """While a command runs, the library's messages (training progress, fetch's steps) are
    its output lines and its warnings go to stderr, each written to this call's streams."""
    lines = logging.StreamHandler(sys.stdout)
    lines.setFormatter(logging.Formatter("%(message)s"))
    lines.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings_ = logging.StreamHandler(sys.stderr)
    warnings_.setFormatter(logging.Formatter("note: %(message)s"))
    warnings_.setLevel(logging.WARNING)
    logger = logging.getLogger("resnet_repro")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    logger.addHandler(warnings_)
    try:
        yield
    finally:
        logger.removeHandler(lines)
        logger.removeHandler(warnings_)
        logger.setLevel(level)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def batch_images(text: str) -> int:
    value = positive_int(text)
    if value > 10_000:
        raise argparse.ArgumentTypeError(
            f"must be at most 10000 (a batch of the official archive), got {value}"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"] and len(argv) > 1:
        # The architecture's --version belongs to a subcommand; before it, --version is the
        # program's and would print it and exit 0, silently ignoring the rest.
        parser.error(
            f"--version takes no value and ends the command; for the network version, put it "
            f"after the subcommand: resnet-repro {' '.join(argv[2:3] or ['train'])} "
            f"--resnet-version {argv[1]} ..."
        )
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's own usage, not the program's
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    if "--version" in argv[1:]:
        print(
            f"resnet-repro {args.name}: note: the network's --version is spelled "
            "--resnet-version now (the old spelling keeps working)",
            file=sys.stderr,
        )
    try:
        with messages_shown():
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"resnet-repro {args.name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except USER_ERRORS as e:
        return fail(args, e)
    except subprocess.CalledProcessError as e:  # a git or dvc step of the study failed
        return fail(args, RuntimeError(f"{e.cmd} failed with exit status {e.returncode}"))


if __name__ == "__main__":
    sys.exit(main())
