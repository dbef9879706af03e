"""The resnet-repro command line: entry point and help."""

import subprocess
import sys

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
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert __version__ in capsys.readouterr().out
