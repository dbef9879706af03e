"""The README as a newcomer uses it: its example lines run as written, the commands and files it
names exist, and it stays short (the rest lives in docs/)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def example_lines() -> list[str]:
    block = README.split("<!-- readme-example -->", 1)[1]
    code = block.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in code.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("resnet-repro") is None, reason="the package is not installed")
def test_the_readme_examples_run_as_written(tmp_path):
    """In a fresh folder, one line after another, exactly as printed; each must succeed."""
    lines = example_lines()
    assert len(lines) >= 4 and all(line.startswith("resnet-repro ") for line in lines)
    for line in lines:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "run" / "model-3.ckpt").is_file()
    assert (tmp_path / "run" / "eval-test.json").is_file()


def test_the_readme_names_what_exists_and_stays_short():
    assert len(README.splitlines()) <= 120
    for link in re.findall(r"\]\((docs/[^)]+)\)", README):
        assert (REPO / link).is_file(), link
    sessions = (REPO / "noxfile.py").read_text()
    for session in re.findall(r"nox -s (\w+)", README):
        assert f"def {session}(" in sessions, session
    assert (REPO / "dvc.yaml").is_file() and (REPO / "pipeline/rehearsal.yaml").is_file()
