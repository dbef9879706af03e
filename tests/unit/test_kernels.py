"""Portable CPU kernels (kernels.py): under the pin, a machine whose libraries stop at AVX2 and
one that uses AVX-512 train to the same bits; without it they do not (so the pin is what makes
the pinned CPU table hold on any x86-64 CPU)."""

import json
import subprocess
import sys

import pytest
import torch

from resnet_repro.kernels import PORTABLE_ENV, SWITCH, portable_env

# What an AVX2-only CPU shows the libraries that choose kernels by instruction set.
AVX2_MACHINE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}

TRAIN = """
import hashlib, json, sys, tempfile
from resnet_repro.config import make_config
from resnet_repro.run_folder import machine
from resnet_repro.train import Trainer
import torch

config = make_config(
    sys.argv[1], version=int(sys.argv[2]), resnet_size=1, data=sys.argv[3], epochs=2,
    batch_size=40, valid_fraction=0.2, device="cpu",
)
trainer = Trainer(config, tempfile.mkdtemp())
trainer.fit()
weights = b"".join(v.numpy().tobytes() for v in trainer.model.state_dict().values())
print(json.dumps({
    "weights": hashlib.sha256(weights).hexdigest(),
    "kernels": machine(torch.device("cpu"))["cpu_kernels"],
}))
"""


def train(archive, env, recipe="paper", version="1"):
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, recipe, version, str(archive)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def without_pin(**extra):
    """This process's environment without the pin's kernel settings; the thread count stays the
    session's, since what differs without the pin is the kernels."""
    import os

    pin = PORTABLE_ENV.keys() - {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    env = {k: v for k, v in os.environ.items() if k not in pin}
    return {**env, **extra}


# Large: its pinned runs take the pin's two threads, which slow down more than one beside busy
# processes (nox -s tests runs one thread per process); it runs beside the CPU-scale study
# the pin serves.
@pytest.mark.large
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512",
    reason="needs an AVX-512 CPU to compare with the AVX2 kernels",
)
@pytest.mark.parametrize(("recipe", "version"), [("paper", "1"), ("seed", "2")])
def test_avx2_and_avx512_machines_agree_under_the_pin_only(fake_archive, recipe, version):
    avx512 = train(fake_archive, portable_env(without_pin()), recipe, version)
    avx2 = train(fake_archive, portable_env(without_pin(**AVX2_MACHINE)), recipe, version)
    assert avx512["weights"] == avx2["weights"]
    assert avx512["kernels"] == {
        "pin": "portable-avx2",
        "cpu_capability": "AVX2",
        "mkldnn": False,
        "nnpack": False,
        "mkl_cbwr": "COMPATIBLE",
        "threads": 2,
    }
    default = train(fake_archive, without_pin(), recipe, version)
    default_avx2 = train(fake_archive, without_pin(**AVX2_MACHINE), recipe, version)
    assert default["weights"] != default_avx2["weights"], "the default kernels agree here too"
    assert default["kernels"]["pin"].startswith("none")


def test_a_pin_that_did_not_take_effect_is_refused(fake_archive, tmp_path):
    env = without_pin(**{SWITCH: "1", "ATEN_CPU_CAPABILITY": "default"})
    options = ["--data", str(fake_archive), "--valid-fraction", "0.2", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "resnet_repro", "train", *options, "--out", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "asks for torch's AVX2 kernels, but this process runs DEFAULT" in done.stderr
