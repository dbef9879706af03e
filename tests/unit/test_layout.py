"""The module map holds: each module says what it owns in its first line, and the data path
reads top to bottom: a module imports only from layers below its own (so evaluation never
imports the training engine, loading never imports fetching's callers, and nothing cycles)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "resnet_repro"

# archive -> arrays -> device tensors -> augmentation -> model -> metrics -> verdict
LAYERS = [
    {
        "atomic",
        "cifar",
        "net",
        "image_utils",
        "golden",
        "recipes",
    },  # facts, files, the network, pixels, recipes
    {"download"},  # bytes from a URL
    {"config", "fetch", "archive_writer"},  # settings; archives in and out
    {"kernels"},  # the process's CPU kernels
    {"study"},  # the study as params.yaml lays it out; the rehearsal's rules
    {"study_clone"},  # the study run with git and dvc, without torch
    # arrays, state, the step's graph
    {
        "data",
        "checkpoint",
        "runtime",
        "distributed",
        "schedule",
        "step_graph",
        "optim",
    },
    {"pack", "run_folder"},  # image files in; the run folder (its lock, resume point, writes)
    {"evaluate", "loader"},  # metrics; the loop's data
    {"train"},  # the engine
    {"pipeline", "certificate"},  # the study's stages; its certificate
    {"report", "projection"},
    {"cli"},
    {"__main__"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def package_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resnet_repro"):
            module = node.module.removeprefix("resnet_repro").lstrip(".")
            names |= {module} if module else {a.name for a in node.names}
    return {n for n in names if (PACKAGE / f"{n}.py").is_file()}


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYER)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_from_lower_layers(module):
    upward = sorted(
        m for m in package_imports(PACKAGE / f"{module}.py") if LAYER[m] >= LAYER[module]
    )
    assert not upward, f"resnet_repro/{module}.py imports {upward} from its own layer or above"


@pytest.mark.parametrize("module", [m for m in MODULES if m != "__main__"])
def test_module_says_what_it_owns_in_its_first_line(module):
    doc = ast.get_docstring(ast.parse((PACKAGE / f"{module}.py").read_text()))
    assert doc and len(doc.splitlines()[0]) > 30, f"resnet_repro/{module}.py: no docstring"


def test_the_module_map_has_one_row_per_module():
    """docs/modules.md: each module of the package in one row of its own, and no other."""
    rows = [
        line
        for line in (PACKAGE.parent / "docs" / "modules.md").read_text().splitlines()
        if line.startswith("| `resnet_repro/")
    ]
    named = [row.split("`")[1].removeprefix("resnet_repro/").removesuffix(".py") for row in rows]
    assert all(row.count("`resnet_repro/") == 1 and "`, `" not in row.split("|")[1] for row in rows)
    assert sorted(named) == sorted(m for m in MODULES if m != "__main__")
