"""Pipeline steps: a run's config from params.yaml, a run's metrics, checkpoint lists."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from resnet_repro.checkpoint import CheckpointError
from resnet_repro.cli import main
from resnet_repro.config import ConfigError, make_config
from resnet_repro.evaluate import parse_checkpoints
from resnet_repro.pipeline import run_config, run_metrics
from resnet_repro.train import train


def params_file(tmp_path, runs, defaults=None):
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data": {"dest": "somewhere"}, "train_defaults": defaults or {}, "runs": runs}
        )
    )
    return path


def test_run_config_overlays_defaults_run_and_recipe(tmp_path):
    path = params_file(
        tmp_path,
        {"a": {"recipe": "seed", "version": 2, "resnet_size": 8, "eval_checkpoints": "1:2:1"}},
        defaults={"device": "cpu", "epochs": 3},
    )
    config = run_config(path, "a")
    assert config == make_config(
        "seed", version=2, resnet_size=8, device="cpu", epochs=3, data="somewhere"
    )


def test_seeds_are_validated(tmp_path):
    from resnet_repro.study import run_seeds

    assert run_seeds({}) == [0] and run_seeds({"seeds": [0, 1, 2]}) == [0, 1, 2]
    for bad in ([], [0, 0], ["1"], 3):
        with pytest.raises(ConfigError, match="seeds must be a non-empty list"):
            run_seeds({"seeds": bad})


def test_run_config_errors(tmp_path):
    path = params_file(tmp_path, {"a": {"version": 7}})
    with pytest.raises(ConfigError, match=r"no run 'b'; runs are \['a'\]"):
        run_config(path, "b")
    with pytest.raises(ConfigError, match=r"run a: version must be one of"):
        run_config(path, "a")
    with pytest.raises(ConfigError, match="cannot read params"):
        run_config(tmp_path / "nowhere.yaml", "a")


def test_full_study_params_hold_the_seed_and_paper_grids():
    from pathlib import Path

    params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    runs = params["runs"]
    grid = {(r["recipe"], r["version"], r["resnet_size"]) for r in runs.values()}
    for recipe in ("seed", "paper"):
        for version in (1, 2):
            for size in (8, 16, 18):
                assert (recipe, version, size) in grid
    assert {("paper", 1, n) for n in (3, 5, 7, 9)} <= grid
    for name in runs:
        run_config(Path(__file__).parents[2] / "params.yaml", name)
    from resnet_repro.study import run_seeds

    # The papers' 5-run statistics need 5 seeds there; one elsewhere.
    assert run_seeds(params, run="paper-v1-n18") == run_seeds(params, run="paper-v2-n18")
    assert len(run_seeds(params, run="paper-v1-n18")) == 5
    assert run_seeds(params, run="paper-v1-n3") == [0]


def test_parse_checkpoints():
    assert parse_checkpoints("160:200:10") == [160, 170, 180, 190, 200]
    assert parse_checkpoints("160:180:10,182") == [160, 170, 180, 182]
    assert parse_checkpoints("5") == [5]
    with pytest.raises(ValueError, match="expected START:STOP:STEP"):
        parse_checkpoints("160-200")


def test_run_metrics_and_errors(fake_archive, tmp_path):
    config = make_config(
        "paper",
        version=1,
        resnet_size=1,
        epochs=3,
        batch_size=32,
        lr=0.05,
        data=str(fake_archive),
        valid_fraction=0.2,
        device="cpu",
        checkpoint_every=1,
    )
    history = train(config, tmp_path / "run")
    metrics = run_metrics(tmp_path / "run", "1:3:1", tmp_path / "out", device="cpu")
    assert metrics["valid_acc"] == {str(h["epoch"]): h["valid_acc"] for h in history}
    assert metrics["valid_acc_final"] == history[-1]["valid_acc"]
    assert metrics["final_epoch"] == 3
    best = max(history, key=lambda h: (h["valid_acc"], h["epoch"]))
    assert metrics["chosen_epoch"] == best["epoch"]
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == metrics
    assert (tmp_path / "out/history.csv").read_text().startswith("epoch,step,train_loss")
    with pytest.raises(CheckpointError, match=r"no checkpoint model-9.ckpt \(found: model-1"):
        run_metrics(tmp_path / "run", "9", tmp_path / "out", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: no checkpoint model-1.ckpt \(found: none"):
        run_metrics(tmp_path / "empty", "1", tmp_path / "out", device="cpu")


def test_cli_train_from_grid(fake_archive, tmp_path):
    path = params_file(
        tmp_path,
        {
            "tiny": {
                "version": 1,
                "resnet_size": 1,
                "epochs": 1,
                "batch_size": 32,
                "valid_fraction": 0.2,
                "device": "cpu",
                "eval_checkpoints": "1",
            }
        },
    )
    params = yaml.safe_load(path.read_text())
    params["data"]["dest"] = str(fake_archive)
    path.write_text(yaml.safe_dump(params))
    params["seeds"] = [3, 4]
    path.write_text(yaml.safe_dump(params))
    stage = ["stage", "fit", "--params", str(path), "--run", "tiny", "--out", str(tmp_path / "r")]
    assert main(stage) == 0
    assert (tmp_path / "r/seed-3/model-1.ckpt").is_file()
    assert (tmp_path / "r/seed-4/model-1.ckpt").is_file()
    metrics = run_metrics(tmp_path / "r", "1", tmp_path / "m", device="cpu")
    per_seed = [metrics["seeds"][s]["test_acc_final"] for s in ("3", "4")]
    assert metrics["test_acc_final"] == pytest.approx(sum(per_seed) / 2)
    assert metrics["test_acc_final_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "runs:\n  r: [1, 2]\n",
            r"runs.r must be a mapping of settings \(key: value lines\), got list",
        ),
        ("train_defaults: 5\nruns:\n  r: {}\n", r"train_defaults must be a mapping .*got int 5"),
    ],
)
def test_grid_entries_of_the_wrong_yaml_type_are_named(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        run_config(tmp_path / "params.yaml", "r")


@pytest.mark.parametrize("checkpoints", ["", "eval_checkpoints: 'a:b', "])
def test_grid_run_with_unusable_eval_checkpoints_fails_before_training(tmp_path, checkpoints):
    from resnet_repro.pipeline import train_grid_run

    (tmp_path / "params.yaml").write_text(
        f"runs:\n  r: {{{checkpoints}recipe: paper, version: 1, resnet_size: 1}}\n"
    )
    with pytest.raises(ConfigError, match=r"run r: eval_checkpoints: checkpoints"):
        train_grid_run(tmp_path / "params.yaml", "r", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_several_seeds_are_compared_with_the_several_seed_table(tmp_path):
    from resnet_repro.config import load_params
    from resnet_repro.study_clone import CPU_PARAMS, CPU_SEEDS_TABLE, prepare_cpu_workdir

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "pipeline").mkdir()
    (tmp_path / CPU_PARAMS).write_text((repo / CPU_PARAMS).read_text())
    prepare_cpu_workdir(tmp_path, seeds=[0, 1, 2, 3, 4])
    params = load_params(tmp_path / "params.yaml")
    assert params["seeds"] == [0, 1, 2, 3, 4] and params["compare"]["golden"] == CPU_SEEDS_TABLE
    assert (repo / CPU_SEEDS_TABLE).is_file()


def test_a_cpu_without_the_pinned_kernels_is_compared_over_five_seeds(monkeypatch, capsys):
    from resnet_repro import study_clone

    assert study_clone.cpu_pipeline_seeds([3]) == [3]
    monkeypatch.setattr(study_clone, "can_pin", lambda: True)
    assert study_clone.cpu_pipeline_seeds(None) is None  # params-cpu.yaml's one seed, pinned table
    monkeypatch.setattr(study_clone, "can_pin", lambda: False)
    assert study_clone.cpu_pipeline_seeds(None) == [0, 1, 2, 3, 4]
    assert "cannot run the pinned table's kernels (AVX2)" in capsys.readouterr().out


def test_the_documented_weight_decay_experiment_sets_the_seed_runs_alone(tmp_path):
    """docs/pipeline.md's `dvc exp run -S ...`, applied by DVC's own override code to the
    committed params.yaml: every seed run (and nothing else) trains with weight decay 2e-4."""
    hydra = pytest.importorskip("dvc.utils.hydra", reason="dvc is not installed")
    repo = Path(__file__).resolve().parents[2]
    (command,) = [
        line.strip()
        for line in (repo / "docs/pipeline.md").read_text().splitlines()
        if line.strip().startswith("dvc exp run -n seed-weight-decay")
    ]
    overrides = [part.strip("'") for part in command.split(" -S ")[1:]]
    params = tmp_path / "params.yaml"
    params.write_text((repo / "params.yaml").read_text())
    hydra.apply_overrides(params, overrides)
    committed = yaml.safe_load((repo / "params.yaml").read_text())["runs"]
    for run in committed:
        before, after = run_config(repo / "params.yaml", run), run_config(params, run)
        if before.recipe == "seed":
            assert (before.weight_decay, after.weight_decay) == (0.0, 2e-4), run
            assert after == dataclasses.replace(before, weight_decay=2e-4), run
        else:
            assert after == before, run
    assert sum(run_config(params, r).recipe == "seed" for r in committed) == len(overrides) == 6
