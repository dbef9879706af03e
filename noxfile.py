"""Developer sessions. Every session installs torch from constraints.txt first, so all sessions
test one torch version (on Linux, PyPI's build of it is the CUDA one)."""

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "torch")
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property (hypothesis) and golden tests, then one untimed round of every benchmark
    so they cannot rot. Extra arguments go to the first pytest run."""
    install(session, "test,bench,pipeline")
    session.env.setdefault("HYPOTHESIS_PROFILE", "ci")
    session.run("pytest", "tests/unit", "tests/properties", "tests/golden", *session.posargs)
    session.run("pytest", "benchmarks", "--benchmark-disable", "-q")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks with same-run reference ratios. `nox -s bench -- --check` fails on a ratio
    regression against benchmarks/baselines/<machine>.json; `-- --update-baselines` rewrites it.
    """
    install(session, "bench")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-json",
        "benchmarks/results/latest.json",
        *session.posargs,
    )


@nox.session
def pipeline(session: nox.Session) -> None:
    """The whole DVC pipeline at CPU scale (fake archive, tiny networks, few epochs): `dvc repro`
    in a git clone of the committed repository, so that params.yaml and dvc.lock stay
    untouched and what runs is what a new user gets."""
    install(session, "pipeline")
    workdir = Path(session.create_tmp()) / "cpu-pipeline"
    shutil.rmtree(workdir, ignore_errors=True)
    session.run("resnet-repro", "cpu-pipeline", "--workdir", str(workdir))
    session.log((workdir / "results" / "comparison.md").read_text())
    session.log(f"report: {workdir / 'results' / 'report' / 'report.md'}")


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU side in one command, in the current environment (the CUDA torch already
    installed; no package access needed): the CUDA test tier, the CUDA benchmarks and a short
    training run on ARCHIVE, summarized in gpu-check/summary.{md,json}.
    `nox -s gpu -- --archive cifar-10-python.tar.gz`"""
    session.run("python", ".ci/gpu_check.py", "--out", "gpu-check", *session.posargs)
