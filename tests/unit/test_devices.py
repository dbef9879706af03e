"""The engine, evaluation and prediction on each available device (the `device` fixture: CPU
always, CUDA where present, `pytest -m cuda` for the GPU tier alone).

On CUDA these are the checks a GPU user depends on: deterministic runs are bitwise equal, a run
killed at a random step resumes bitwise, the fast path (bf16 autocast, channels_last,
torch.compile) learns, a GPU checkpoint evaluates and predicts on a CPU, CPU and GPU evaluation
agree to a few images, and torchrun with one NCCL rank is the plain path.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch._dynamo.utils import counters

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.checkpoint import load_checkpoint, weights_digest
from resnet_repro.config import make_config
from resnet_repro.evaluate import evaluate_run, predict
from resnet_repro.train import Trainer, train


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("devices") / "fake.tar.gz"
    return write_fake_cifar10(path, train_per_batch=60, test_size=60, seed=0)


def config(archive, device, **overrides):
    values = {
        "version": 1,
        "resnet_size": 1,
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.05,
        "milestones": [10_000],
        "data": str(archive),
        "valid_fraction": 0.2,
        "device": device,
        "checkpoint_every": 1,
        "deterministic": device == "cuda",
    }
    return make_config("paper", **(values | overrides))


def cli_args(archive, device, out, *extra):
    c = config(archive, device)
    args = [
        *("--resnet-version", "1", "--resnet-size", "1", "--epochs", str(c.epochs)),
        *("--batch-size", "32", "--lr", "0.05", "--milestones", "10000"),
        *("--data", str(archive), "--valid-fraction", "0.2", "--device", device),
        *("--checkpoint-every", "1", "--out", str(out)),
    ]
    if c.deterministic:
        args.append("--deterministic")
    return [sys.executable, "-m", "resnet_repro", "train", *args, *extra]


def test_same_config_twice_is_bitwise_equal(archive, tmp_path, device):
    train(config(archive, device), tmp_path / "a")
    train(config(archive, device), tmp_path / "b")
    assert weights_digest(tmp_path / "a/last.ckpt") == weights_digest(tmp_path / "b/last.ckpt")
    assert load_checkpoint(tmp_path / "a/last.ckpt")["device_type"] == device


@pytest.mark.slow
def test_killed_at_a_random_step_resumes_bitwise(archive, tmp_path, device):
    subprocess.run(cli_args(archive, device, tmp_path / "whole"), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cli_args(archive, device, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (killed / "model-1.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.005)
    # Somewhere in epoch 2 (it is 8 steps long): the seed is fixed so a failure can be rerun.
    time.sleep(random.Random(len(device)).uniform(0.0, 0.2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "last.ckpt")["epoch"] < 3, "killed too late to test resume"
    subprocess.run(cli_args(archive, device, killed, "--resume"), check=True, capture_output=True)
    assert weights_digest(killed / "last.ckpt") == weights_digest(tmp_path / "whole/last.ckpt")


@pytest.mark.slow
def test_fast_path_trains_an_epoch_with_a_finite_falling_loss(archive, tmp_path, device):
    fast = config(
        archive,
        device,
        epochs=2,
        precision="bf16",
        channels_last=True,
        compile=True,
        deterministic=False,
    )
    history = train(fast, tmp_path)
    losses = [h["train_loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[1] < losses[0], losses


def test_checkpoint_evaluates_and_predicts_on_cpu(archive, tmp_path, device):
    history = train(config(archive, device, epochs=2), tmp_path / "run")
    on_cpu = evaluate_run(tmp_path / "run", [2], split="valid", device="cpu")
    on_device = evaluate_run(tmp_path / "run", [2], split="valid", device=device)
    # Different arithmetic on different devices: a few images may flip, no more.
    images = on_cpu["images"]
    assert abs(on_cpu["results"]["2"]["accuracy"] - history[1]["valid_acc"]) <= 3 / images
    assert (
        abs(on_cpu["results"]["2"]["accuracy"] - on_device["results"]["2"]["accuracy"])
        <= 3 / images
    )
    picture = tmp_path / "cat.png"
    Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8)).save(picture)
    (ranked,) = predict(tmp_path / "run/model-2.ckpt", [picture], device="cpu")
    assert len(ranked) == 10 and abs(sum(p for _, p in ranked) - 1) < 1e-5


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL needs a CUDA device")
def test_torchrun_one_nccl_rank_is_the_plain_path(archive, tmp_path):
    subprocess.run(cli_args(archive, "cuda", tmp_path / "plain"), check=True, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1"]
    one = cli_args(archive, "cuda", tmp_path / "one")
    subprocess.run([*torchrun, *one[1:]], check=True, capture_output=True)
    assert weights_digest(tmp_path / "plain/last.ckpt") == weights_digest(
        tmp_path / "one/last.ckpt"
    )


@pytest.mark.large
def test_compiled_fast_recipe_resumes_bitwise(real_archive, tmp_path, device):
    """With torch.compile's automatic dynamic shapes, the epoch's last, smaller batch made the
    batch dimension dynamic, so a resumed process computed epoch 2 with other kernels than the
    uninterrupted one (weights differed on this subset); static shapes make them equal."""
    args = [
        *("--recipe", "fast", "--resnet-version", "1", "--resnet-size", "1", "--epochs", "2"),
        *("--data", str(real_archive), "--valid-fraction", "0.1", "--device", device),
    ]
    train_cli = [sys.executable, "-m", "resnet_repro", "train", *args]
    subprocess.run([*train_cli, "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*train_cli, "--out", str(killed), "--checkpoint-every", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (killed / "model-1.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Killed after model-1.ckpt: last.ckpt holds epoch 1, or does not exist yet (the resume
    # then continues from model-1.ckpt).
    last = killed / "last.ckpt"
    assert not last.exists() or load_checkpoint(last)["epoch"] <= 1
    subprocess.run(
        [*train_cli, "--out", str(killed), "--checkpoint-every", "1", "--resume"],
        check=True,
        capture_output=True,
    )
    assert weights_digest(killed / "last.ckpt") == weights_digest(tmp_path / "whole/last.ckpt")


def test_compile_mode_reaches_torch_compile(archive, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.append(kw) or module)
    fast = config(archive, "cpu", epochs=1, compile=True, compile_mode="reduce-overhead")
    Trainer(fast, tmp_path)
    assert seen == [{"dynamic": False, "mode": "reduce-overhead"}] * 2  # evaluation, training


def test_one_compilation_for_training_and_one_for_evaluation(archive, tmp_path, device):
    """Time to first step: the epoch's last, smaller batch (16 of 240 images at batch 32) and
    the split's last evaluation batch (10 of 60 at 25) run eagerly, so a run compiles twice
    (training and evaluation mode), not once more per batch shape."""
    torch._dynamo.reset()
    counters.clear()
    c = config(archive, device, epochs=2, compile=True, eval_batch_size=25)
    train(c, tmp_path / "run")
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_train_like_eager(archive, tmp_path):
    """compile mode reduce-overhead (CUDA graphs) against eager, fp32, 2 epochs: the same
    weights within float tolerance (kernels differ, arithmetic does not)."""
    eager = config(archive, "cuda", epochs=2, deterministic=False)
    graphs = config(
        archive, "cuda", epochs=2, deterministic=False, compile=True, compile_mode="reduce-overhead"
    )
    train(eager, tmp_path / "eager")
    train(graphs, tmp_path / "graphs")
    a = load_checkpoint(tmp_path / "eager/last.ckpt")["model"]
    b = load_checkpoint(tmp_path / "graphs/last.ckpt")["model"]
    for name in a:
        if a[name].is_floating_point():
            torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-3, msg=name)
