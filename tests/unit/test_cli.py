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


def test_predict_prints_classes(fake_archive, tmp_path, capsys):
    from PIL import Image

    from resnet_repro.config import make_config
    from resnet_repro.train import train

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
    train(config, tmp_path / "run", echo=False)
    image = tmp_path / "img.png"
    Image.new("RGB", (40, 24), (200, 30, 30)).save(image)
    ckpt = str(tmp_path / "run" / "model-1.ckpt")
    assert main(["predict", "--checkpoint", ckpt, "--top", "2", str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 1
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "bad.png")]) == 1
    assert "bad.png: cannot read as an image" in capsys.readouterr().err
