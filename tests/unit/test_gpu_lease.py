"""The script a lent GPU machine runs (.ci/gpu_lease.sh), run here on the CPU: from a .tar.xz of
class-named JPEG folders it packs an archive, runs the GPU check on it and leaves exactly the
few files the device tool brings back (it returns at most eight)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_repro.cifar import LABEL_NAMES

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pytest_benchmark")


@pytest.fixture
def jpeg_tar_xz(tmp_path):
    """Ten classes of 20 random 32x32 JPEGs under train/, as the shared JPEG copy lays them out."""
    rng = np.random.default_rng(0)
    root = tmp_path / "jpegs" / "train"
    for label in LABEL_NAMES:
        (root / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.jpg")
    path = tmp_path / "train-jpeg.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        tar.add(root, arcname="train")
    return path


@pytest.mark.slow
@pytest.mark.large
def test_lease_script_packs_checks_and_returns_few_files(jpeg_tar_xz, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "DEVICE": "cpu",
        "EPOCHS": "1",
        "DEADLINE": "400",
        "REHEARSE": "0",  # the rehearsal has its own test (tests/golden/test_rehearsal_e2e.py)
        # python3 is the script's interpreter: make it this test's.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", str(REPO / ".ci/gpu_lease.sh"), str(jpeg_tar_xz), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training and" in done.stdout  # pack's line: the archive was made
    assert {p.name for p in out.iterdir()} == {"summary.md", "summary.json", "logs.tar.gz"}
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert steps["cuda tier (pytest -m cuda)"]["status"] == "ok"
    assert steps["training, paper v1 n=3"]["figures"]["epochs"] == 1
    with tarfile.open(out / "logs.tar.gz") as logs:
        names = logs.getnames()
    assert "./train.log" in names and not any(n.endswith(".ckpt") for n in names)
