"""Developer sessions. Every session installs torch from constraints.txt first, so a CPU machine
never pulls a multi-GB CUDA build of torch."""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "torch")
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property (hypothesis) and golden tests. Extra arguments go to pytest."""
    install(session, "test")
    session.env.setdefault("HYPOTHESIS_PROFILE", "ci")
    session.run("pytest", "tests/unit", "tests/properties", "tests/golden", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (pytest-benchmark): not written yet; this session only installs the tools."""
    install(session, "bench")
    session.log("No benchmarks yet: they arrive with the benchmark issue.")
