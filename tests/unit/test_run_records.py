"""What a run records and refuses: provenance segments, honest code versions, resume changes,
the history's torn line, the normalization stored with the run, and process-wide flags."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import tiny_config

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.checkpoint import (
    CheckpointError,
    load_checkpoint,
)
from resnet_repro.cifar import md5_of
from resnet_repro.config import ConfigError
from resnet_repro.evaluate import evaluate_run
from resnet_repro.image_utils import Normalization
from resnet_repro.run_folder import (
    RunFolderError,
    code_version,
    read_history,
    run_folder_lock,
)
from resnet_repro.runtime import deterministic_kernels
from resnet_repro.train import Trainer, train

FAKE_ARCHIVE_MD5 = "049b64c2a0c89e55f142d80a23b906da"  # write_fake_cifar10(path) at 2026-11-26


def test_fake_archive_bytes_are_pinned(tmp_path):
    """The archive writer's output is part of every CPU golden value: any change to its bytes
    must be deliberate (and regenerate the tables)."""
    assert md5_of(write_fake_cifar10(tmp_path / "a.tar.gz")) == FAKE_ARCHIVE_MD5


def test_resume_with_another_experiment_is_refused_then_recorded_when_allowed(
    fake_archive, tmp_path
):
    run = tmp_path / "run"
    train(tiny_config(fake_archive, epochs=1), run)
    before = (run / "last.ckpt").read_bytes()
    with pytest.raises(CheckpointError, match=r"would change the experiment: lr 0.05 -> 0.5"):
        train(tiny_config(fake_archive, epochs=2, lr=0.5), run, resume=True)
    assert (run / "last.ckpt").read_bytes() == before
    train(
        tiny_config(fake_archive, epochs=2, lr=0.5),
        run,
        resume=True,
        allow_changes=True,
    )
    segments = json.loads((run / "provenance.json").read_text())["segments"]
    assert [s["from_epoch"] for s in segments] == [0, 1]
    assert segments[1]["config_changes"] == ["lr 0.05 -> 0.5", "epochs 1 -> 2"]
    assert segments[0]["started"] <= segments[1]["started"]


def grid_params(folder, archive):
    """A one-run grid of one tiny epoch on ``archive``."""
    (folder / "params.yaml").write_text(
        f"data: {{dest: {archive}}}\nruns:\n  r: {{recipe: paper, version: 1, resnet_size: 1, "
        "epochs: 1, batch_size: 32, valid_fraction: 0.2, checkpoint_every: 1, "
        "eval_checkpoints: '1', device: cpu}\n"
    )


def test_one_resume_loads_last_ckpt_once(fake_archive, tmp_path, monkeypatch):
    """The command line's resume and the pipeline's each read last.ckpt once."""
    from resnet_repro.pipeline import train_grid_run

    grid_params(tmp_path, fake_archive)
    train_grid_run(tmp_path / "params.yaml", "r", tmp_path / "out")
    config = tiny_config(fake_archive, epochs=1)
    train(config, tmp_path / "run")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(
        torch,
        "load",
        lambda path, *a, **k: [loads.append(Path(path).name), real_load(path, *a, **k)][1],
    )
    train(tiny_config(fake_archive, epochs=2), tmp_path / "run", resume=True)
    assert loads == ["last.ckpt"]
    loads.clear()
    train_grid_run(tmp_path / "params.yaml", "r", tmp_path / "out")
    assert loads == ["last.ckpt"]


def test_the_pipeline_restarts_a_folder_of_another_run_and_says_why(fake_archive, tmp_path, capsys):
    grid_params(tmp_path, fake_archive)
    from resnet_repro.pipeline import train_grid_run

    seed = tmp_path / "out/seed-0"
    train(tiny_config(fake_archive, epochs=1, lr=0.5), seed)
    (seed / "stray.txt").write_text("an older run's file")
    train_grid_run(tmp_path / "params.yaml", "r", tmp_path / "out")
    assert "starting afresh, since it was trained with another config" in capsys.readouterr().out
    assert not (seed / "stray.txt").exists()
    assert load_checkpoint(seed / "last.ckpt")["config"]["lr"] != 0.5
    (seed / "last.ckpt").write_bytes(b"")
    train_grid_run(tmp_path / "params.yaml", "r", tmp_path / "out")
    assert "starting afresh, since its last.ckpt is unreadable" in capsys.readouterr().out


def test_trainer_trains_only_in_a_folder_it_holds(fake_archive, tmp_path, monkeypatch):
    """Trainer.fit holds the run folder's lock while it trains, whoever built it."""
    trainer = Trainer(tiny_config(fake_archive, epochs=1), tmp_path / "run", progress=False)
    real_epoch = trainer.train_epoch
    held = []

    def epoch(*args):
        with pytest.raises(ConfigError, match="being written by another training process"):
            with run_folder_lock(tmp_path / "run"):
                pass
        held.append(trainer.folder.held)
        return real_epoch(*args)

    monkeypatch.setattr(trainer, "train_epoch", epoch)
    trainer.fit()
    assert held == [True] and not trainer.folder.held
    with run_folder_lock(tmp_path / "run"):  # released when fit returns
        pass


def test_resume_into_a_folder_without_checkpoint_says_so(fake_archive, tmp_path):
    with pytest.raises(ConfigError, match=r"typo does not exist; check the --out folder"):
        train(tiny_config(fake_archive), tmp_path / "typo", resume=True)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"last.ckpt does not exist; check the --out folder"):
        train(tiny_config(fake_archive), tmp_path / "empty", resume=True)


def test_code_version_of_a_copy_inside_another_repository_is_unknown(tmp_path):
    import resnet_repro

    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    copy = other / "resnet_repro"
    shutil.copytree(resnet_repro.__path__[0], copy)
    version = code_version(copy)
    assert version["commit"] is None and "not tracked" in version["reason"]


def test_code_version_reports_a_dirty_tree(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    clean = code_version(repo / "pkg")
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (repo / "pkg" / "a.py").write_text("x = 2\n")
    assert code_version(repo / "pkg")["dirty"] is True


def test_a_torn_last_history_line_is_dropped_a_damaged_middle_one_named(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_history(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(RunFolderError, match=r"history.jsonl: line 2 is not JSON"):
        read_history(path)


def test_pixel_mean_is_the_training_images_mean_and_travels_with_the_run(fake_archive, tmp_path):
    config = tiny_config(fake_archive, epochs=1, normalization="pixel_mean")
    history = train(config, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run/model-1.ckpt")
    normalize = Normalization.from_state(state["normalization"])
    from resnet_repro.data import load_splits

    splits = load_splits(config)
    expected = splits.x_train.astype(np.float64).mean(0).reshape(3, 32, 32) / 255
    torch.testing.assert_close(normalize.pixel_mean.double(), torch.from_numpy(expected))
    images = torch.from_numpy(np.array(splits.x_train)).view(-1, 3, 32, 32)
    assert normalize(images).double().mean(0).abs().max() < 1e-5  # centred per pixel
    # Evaluation applies the stored transform: the validation accuracy training measured.
    report = evaluate_run(tmp_path / "run", [1], split="valid", device="cpu")
    assert report["results"]["1"]["accuracy"] == history[-1]["valid_acc"]


def test_deterministic_kernels_restore_the_process_settings():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_evaluate_from_another_folder_finds_data_given_relative_to_training(
    fake_archive, tmp_path, monkeypatch
):
    train_dir = tmp_path / "where-training-ran"
    (train_dir / "data").mkdir(parents=True)
    shutil.copy(fake_archive, train_dir / "data/c.tar.gz")
    monkeypatch.chdir(train_dir)
    train(tiny_config("data/c.tar.gz", epochs=1), train_dir / "run")
    monkeypatch.chdir(tmp_path)
    report = evaluate_run(train_dir / "run", [1], split="test", device="cpu")
    assert report["images"] == 40
    (train_dir / "data/c.tar.gz").unlink()
    from resnet_repro.config import ConfigError

    with pytest.raises(ConfigError, match=r"data 'data/c.tar.gz' is not found .* pass --data"):
        evaluate_run(train_dir / "run", [1], split="test", device="cpu")
