"""The resnet-repro command line: entry point and help."""

import subprocess
import sys

import pytest

from resnet_repro import __version__
from resnet_repro.cli import main


def test_help_via_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "resnet_repro", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: resnet-repro" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: resnet-repro" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_predict_prints_classes(trained_run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.new("RGB", (40, 24), (200, 30, 30)).save(image)
    ckpt = str(trained_run / "model-1.ckpt")
    assert main(["predict", "--checkpoint", ckpt, "--top", "2", str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 1
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "bad.png")]) == 1
    assert "bad.png: cannot read as an image" in capsys.readouterr().err


def test_train_help_documents_every_option_with_default_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{sgd,adam}" in text and "{constant,multistep,onecycle,cosine}" in text
    assert "recipe: seed 200, paper 164, fast 40, paper-valid 182" in text  # --epochs
    assert "(default: 0)" in text  # --seed
    assert "--allow-changes" in text


def test_program_version_does_not_swallow_the_architecture_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version", "1", "train", "--out", "x"])
    assert exit_.value.code == 2
    assert "put it after the subcommand: resnet-repro train --version 1" in capsys.readouterr().err


def files_of(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(fake_archive, tmp_path_factory):
    """A finished 1-epoch run, for bad inputs aimed at an existing run."""
    from resnet_repro.config import make_config
    from resnet_repro.train import train

    run = tmp_path_factory.mktemp("bad-inputs") / "run"
    config = make_config(
        "paper",
        version=1,
        resnet_size=1,
        epochs=1,
        batch_size=32,
        data=str(fake_archive),
        valid_fraction=0.2,
        device="cpu",
    )
    train(config, run, echo=False)
    return run


# One row per user mistake: the command (with {archive}, {run}, {tmp} filled in), its exit
# status, a fragment of the one-line error, and whether the run folder must stay unchanged.
BAD_INPUTS = [
    ("train --out {tmp}/r --data {archive} --epochs 0", "epochs must be >= 1"),
    ("train --out {tmp}/r --data {archive} --max-iters -5", "max_iters must be >= 0"),
    ("train --out {tmp}/r --data {archive} --lr nan", "lr must be a finite number > 0"),
    ("train --out {tmp}/r --data {tmp}/missing.tar.gz", "missing.tar.gz: no such file"),
    ("train --out {archive} --data {archive}", "is a file; name a folder for the run"),
    (
        "train --out {tmp}/typo --data {archive} --valid-fraction 0.2 --resume",
        "last.ckpt does not exist",
    ),
    (
        "train --out {run} --data {archive} --valid-fraction 0.2 --version 1 --resnet-size 1 "
        "--batch-size 32 --epochs 2 --lr 0.5 --resume",
        "would change the experiment: lr 0.1 -> 0.5",
    ),
    (
        "train --out {run} --data {archive} --resnet-size 2 --resume",
        "checkpoint of another architecture: resnet_size 1 (checkpoint) vs 2 (run)",
    ),
    (
        "train --out {run} --data {archive} --valid-fraction 0.2",
        "already holds checkpoints; pass --resume",
    ),
    ("train --out {tmp}/r --data {archive}", "split_index 50000 is beyond the 200 training"),
    (
        "train --out {tmp}/r --data {archive} --device cpu --cuda-graph",
        "cuda_graph needs a CUDA device, but this run's device is cpu",
    ),
    (
        "train --grid params.yaml --run paper-v1-n3 --out {tmp}/g --lr 0.5",
        "--grid takes every setting from params.yaml; --lr cannot be given with it",
    ),
    ("train --grid params.yaml --run nope --out {tmp}/g", "no run 'nope'"),
    ("evaluate --run {run} --checkpoints a:b", "expected START:STOP:STEP"),
    ("evaluate --run {run} --checkpoints 7", "no checkpoint model-7.ckpt (found: model-1.ckpt)"),
    ("predict --checkpoint {archive} {archive}", "not a readable checkpoint (it holds something"),
    ("predict --checkpoint {tmp} {archive}", "no such checkpoint"),
    ("predict --checkpoint {run}/model-1.ckpt {archive}", "cannot read as an image"),
    ("fetch --dest {tmp}/d --archive {tmp}/none.tar.gz", "none.tar.gz: archive not found"),
]


@pytest.mark.parametrize(("command", "fragment"), BAD_INPUTS, ids=[r[0][:40] for r in BAD_INPUTS])
def test_each_bad_input_gets_one_line_and_changes_nothing(
    command, fragment, fake_archive, trained_run, tmp_path, capsys
):
    before = files_of(trained_run)
    args = command.format(archive=fake_archive, run=trained_run, tmp=tmp_path).split()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    assert files_of(trained_run) == before


def test_predict_top_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--checkpoint", "c.ckpt", "--top", "0", "x.png"])
    assert exit_.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_ctrl_c_gives_the_resume_line_and_status_130(monkeypatch, capsys, tmp_path):
    from resnet_repro import train as train_module

    def interrupted(*args, **kwargs):
        raise train_module.TrainingInterrupted("interrupted; run/last.ckpt holds epoch 3: rerun")

    monkeypatch.setattr(train_module, "train", interrupted)
    assert main(["train", "--out", str(tmp_path / "run")]) == 130
    assert "holds epoch 3: rerun" in capsys.readouterr().err


def test_an_image_too_large_to_decode_safely_is_one_line(
    trained_run, tmp_path, capsys, monkeypatch
):
    from PIL import Image

    Image.new("RGB", (40, 24)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 960 pixels > 2 x 100: a "bomb"
    ckpt = str(trained_run / "model-1.ckpt")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "big.png")]) == 1
    err = capsys.readouterr().err
    assert "big.png: cannot read as an image" in err and len(err.strip().splitlines()) == 1
