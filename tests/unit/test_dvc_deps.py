"""dvc.yaml's stages list as dependencies every module of this package that their command
runs, so that a change to any of them re-runs the stage (and nothing can drift again)."""

import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml

from resnet_repro.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "resnet_repro"


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resnet_repro"):
            module = node.module.removeprefix("resnet_repro").lstrip(".")
            names |= {module} if module else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {
                a.name.removeprefix("resnet_repro.")
                for a in node.names
                if a.name.startswith("resnet_repro.")
            }
    return {n for n in names if (PACKAGE / f"{n}.py").is_file()}


def modules_run_by(command: str) -> set[str]:
    """The package modules `python -m resnet_repro COMMAND` runs: the entry point, cli.py and
    its module-level imports, the command's handler's imports and, transitively, everything
    those modules import."""
    parser = build_parser()
    for word in command.split():  # "train", or a group's "stage fit"
        parser = parser._subparsers._group_actions[0].choices[word]
    handler = parser.get_default("handler")
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    module_level = ast.Module(
        body=[n for n in cli.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[]
    )
    todo = imported_modules(ast.parse(inspect.getsource(handler))) | imported_modules(module_level)
    seen = {"__init__", "__main__", "cli"}
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= imported_modules(ast.parse((PACKAGE / f"{module}.py").read_text()))
    return seen


def stages():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        command = re.search(r"python -m resnet_repro ((?:stage )?\S+)", body["cmd"]).group(1)
        deps = {d for d in body.get("deps", []) if isinstance(d, str)}
        yield name, command, deps


@pytest.mark.parametrize(
    ("name", "command", "deps"), [pytest.param(*stage, id=stage[0]) for stage in stages()]
)
def test_stage_deps_cover_every_module_its_command_runs(name, command, deps):
    listed = {Path(d).stem for d in deps if d.startswith("resnet_repro/")}
    missing = sorted(modules_run_by(command) - listed)
    assert not missing, (
        f"dvc.yaml stage {name}: add resnet_repro/{{{','.join(missing)}}}.py to deps"
    )


def test_every_listed_dependency_exists():
    """A source dependency that is gone (a module merged away) fails dvc repro at once."""
    sources = {
        d for _, _, deps in stages() for d in deps if d.startswith(("resnet_repro/", "tests/"))
    }
    missing = sorted(d for d in sources if not (REPO / d).exists())
    assert not missing, f"dvc.yaml lists dependencies that do not exist: {missing}"


def test_the_compare_stage_records_a_failing_cell_and_goes_on():
    """dvc.yaml calls the users' fetch and compare; compare with --exit-zero, or a failing cell
    would stop the pipeline before its report."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert {command for _, command, _ in stages()} - {"fetch", "compare"} <= {
        f"stage {verb}" for verb in ("fit", "metrics", "report")
    }
    assert "compare --exit-zero " in doc["stages"]["compare"]["cmd"]


def test_the_check_sees_lazy_imports():
    modules = modules_run_by("stage fit")
    assert {"train", "pipeline", "net", "data", "checkpoint", "atomic"} <= modules
    assert "report" not in modules_run_by("stage fit")
    assert "golden" in modules_run_by("fetch")  # cli.py imports it at module level
