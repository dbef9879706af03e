"""The developers' CPU-scale study tools (.ci/cpu_study.py): the golden table they write from a
grid's metrics, and the work folder they refuse."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "cpu_study.py"


@pytest.fixture(scope="module")
def cpu_study():
    spec = importlib.util.spec_from_file_location("cpu_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grid(workdir: Path, per_seed: dict) -> Path:
    folder = workdir / "results" / "runs" / "seed-v1-n1"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"seeds": per_seed}))
    return workdir


def test_one_seed_pins_each_value_within_half_a_point(cpu_study, tmp_path):
    values = {"test_acc_final": 0.81, "valid_acc_final": 0.8, "test_acc_continued": None}
    table = cpu_study.golden_table(grid(tmp_path, {"0": values}), [0])
    assert [(c["metric"], c["golden"], c["tolerance"]) for c in table["cells"]] == [
        ("test_acc_final", 0.81, {"rule": "two_sided", "points": 0.5}),
        ("valid_acc_final", 0.8, {"rule": "two_sided", "points": 0.5}),
    ]
    assert table["runs_per_cell"] == 1 and table["cells"][0]["statistic"] == "single"
    assert table["source"].endswith("python .ci/cpu_study.py golden --seeds 0")


def test_several_seeds_give_their_mean_within_three_standard_errors(cpu_study, tmp_path):
    seeds = {
        str(s): {"test_acc_final": v, "valid_acc_final": v, "test_acc_continued": None}
        for s, v in enumerate([0.70, 0.74, 0.72])
    }
    cell, _ = cpu_study.golden_table(grid(tmp_path, seeds), [0, 1, 2])["cells"]
    # stdev 0.02 over 3 seeds: 3 standard errors of the mean are 3.46 points.
    assert (cell["statistic"], cell["runs"], cell["golden"]) == ("mean", 3, 0.72)
    assert cell["tolerance"] == {"rule": "two_sided", "points": 3.46}
    assert cell["note"] == "seeds [0, 1, 2]: 0.7000, 0.7400, 0.7200"


def test_a_work_folder_must_be_empty_or_new(tmp_path):
    (tmp_path / "kept.txt").write_text("")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "pipeline", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "is not an empty or new folder" in done.stderr
    assert (tmp_path / "kept.txt").exists()
