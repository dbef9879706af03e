"""Checkpoint files: atomic writes, safe loading, and the checks a resume relies on."""

import os
from pathlib import Path

import pytest
import torch

from resnet_repro import checkpoint as checkpoint_module
from resnet_repro.checkpoint import (
    CheckpointError,
    Resume,
    ResumePoint,
    check_architecture,
    check_device_type,
    code_digest,
    decide_resume,
    load_checkpoint,
    save_checkpoint,
    weights_digest,
)
from resnet_repro.config import make_config


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}})
    before = path.read_bytes()

    def half_write(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(CheckpointError, match=r"No space left on device\); the previous last"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_loading_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil(), "config": {}}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: not a readable checkpoint") as refused:
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    # The reason is named; torch's advice to load the file unsafely is not passed on.
    assert "unsupported GLOBAL posix.system" in str(refused.value)
    assert "weights_only" not in str(refused.value)


def test_missing_empty_and_foreign_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope.ckpt: no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"empty.ckpt: not a readable checkpoint \(the file is empty\)"
    ):
        load_checkpoint(tmp_path / "empty.ckpt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"other.ckpt: not a resnet_repro checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")


def test_weights_digest_sees_one_changed_value(tmp_path):
    state = {"model": {"a": torch.zeros(3), "b": torch.ones(2)}, "config": {}}
    save_checkpoint(tmp_path / "x.ckpt", state)
    state["model"]["b"][1] = 1.0000001
    save_checkpoint(tmp_path / "y.ckpt", state)
    assert weights_digest(tmp_path / "x.ckpt") != weights_digest(tmp_path / "y.ckpt")
    save_checkpoint(
        tmp_path / "z.ckpt", {"model": {"b": torch.ones(2), "a": torch.zeros(3)}, "config": {}}
    )
    assert weights_digest(tmp_path / "x.ckpt") == weights_digest(tmp_path / "z.ckpt")


def test_architecture_and_device_checks_name_what_differs():
    state = {"config": make_config("paper", version=1, resnet_size=3).to_dict()}
    check_architecture(state, make_config("paper", version=1, resnet_size=3, lr=0.5), Path("c"))
    with pytest.raises(CheckpointError, match=r"resnet_size 3 \(checkpoint\) vs 5 \(run\)"):
        check_architecture(state, make_config("paper", version=1, resnet_size=5), Path("c"))
    seed = make_config("seed", version=1, resnet_size=3)  # shortcut B where paper has A
    with pytest.raises(
        CheckpointError, match=r"resume with --v1-shortcut A --init he to continue it"
    ):
        check_architecture(state, seed, Path("r/c"))
    with pytest.raises(CheckpointError, match=r"r/config.yaml does not describe this checkpoint"):
        check_architecture(state, seed, Path("r/c"), resuming=False)
    # v2's projection BN and bottleneck stride: the seed's (Fig. 7, the skeleton's 3x3) against
    # He et al.'s released code; v1_shortcut does not shape a v2 network.
    v2_seed = {"config": make_config("seed", version=2, resnet_size=3).to_dict()}
    with pytest.raises(CheckpointError) as info:
        check_architecture(v2_seed, make_config("paper", version=2, resnet_size=3), Path("c"))
    assert "v2_projection_bn True (checkpoint) vs False (run)" in str(info.value)
    assert "v1_shortcut" not in str(info.value)
    assert "resume with --v2-projection-bn --bottleneck-stride 3x3 --init pytorch" in str(
        info.value
    )
    # A checkpoint written before init was a setting: every run then had He's init.
    old = {"config": {k: v for k, v in state["config"].items() if k != "init"}}
    check_architecture(old, make_config("paper", version=1, resnet_size=3), Path("c"))
    with pytest.raises(CheckpointError, match=r"init 'he' \(checkpoint\) vs 'pytorch' \(run\)"):
        check_architecture(
            old, make_config("paper", version=1, resnet_size=3, init="pytorch"), Path("c")
        )
    check_device_type({"device_type": "cuda"}, "cuda", Path("c"))
    check_device_type({}, "cpu", Path("c"))  # checkpoints from before the field: CPU
    with pytest.raises(CheckpointError, match=r"on cuda, but this run is on cpu"):
        check_device_type({"device_type": "cuda"}, "cpu", Path("c"))


def test_code_digest_covers_every_module(monkeypatch, tmp_path):
    before = code_digest()
    for path in checkpoint_module.PACKAGE_DIR.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(checkpoint_module, "PACKAGE_DIR", tmp_path)
    assert code_digest() == before
    (tmp_path / "net.py").write_text((tmp_path / "net.py").read_text() + "\n")
    assert code_digest() != before


def test_refusals_say_why_in_one_line_without_torch_advice(tmp_path):
    from fractions import Fraction  # picklable, but not a tensor or a plain value

    torch.save({"model": Fraction(1, 3), "config": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "foreign.ckpt")
    text = str(info.value)
    assert "it holds something other than tensors and plain values: " in text
    assert "weights_only" not in text and len(text.splitlines()) == 1
    (tmp_path / "notes.ckpt").write_text("my notes\nsecond line\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "notes.ckpt")
    assert len(str(info.value).splitlines()) == 1
    torch.save({"model": {}}, tmp_path / "no-config.ckpt")
    with pytest.raises(CheckpointError, match="not a resnet_repro checkpoint"):
        load_checkpoint(tmp_path / "no-config.ckpt")
    torch.save({"config": {}}, tmp_path / "no-model.ckpt")
    with pytest.raises(CheckpointError, match="not a resnet_repro checkpoint"):
        load_checkpoint(tmp_path / "no-model.ckpt")


def test_a_failed_first_write_says_nothing_was_written(tmp_path, monkeypatch):
    def full(obj, f):
        raise RuntimeError("")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"cannot be written \(RuntimeError\); no new.ckpt"):
        save_checkpoint(tmp_path / "new.ckpt", {"model": {}, "config": {}})


def test_reasons_quote_torch_first_line_only(tmp_path):
    from fractions import Fraction

    torch.save({"model": Fraction(1, 3), "config": {}}, tmp_path / "f.ckpt")
    with pytest.raises(CheckpointError, match=r"plain values: .*fractions\.Fraction") as info:
        load_checkpoint(tmp_path / "f.ckpt")
    assert "Check the documentation" not in str(info.value)
    save_checkpoint(tmp_path / "t.ckpt", {"model": {"w": torch.ones(100)}, "config": {}})
    (tmp_path / "t.ckpt").write_bytes((tmp_path / "t.ckpt").read_bytes()[:200])  # truncated
    with pytest.raises(
        CheckpointError, match=r"t.ckpt: not a readable checkpoint \(Pytorch"
    ) as info:
        load_checkpoint(tmp_path / "t.ckpt")
    assert len(str(info.value).splitlines()) == 1 and "weights_only" not in str(info.value)


def test_one_rule_decides_continue_refuse_and_restart():
    """decide_resume: the command line's reading (exact=False) and the pipeline's (exact=True)
    of the same checkpoint state."""
    config = make_config("paper", device="cpu", lr=0.05)
    state = {"config": config.to_dict(), "data_md5": "d", "code_digest": "c", "epoch": 1}
    point = ResumePoint(Path("run/last.ckpt"), state)
    for exact in (False, True):
        assert decide_resume(point, config, "d", "c", exact=exact).verb == "continue"
        missing = decide_resume(None, config, "d", "c", exact=exact)
        assert (missing.verb, missing.reason) == ("restart", "it holds no checkpoint")
        torn = decide_resume(ResumePoint(point.path, error="empty"), config, "d", "c", exact=exact)
        assert (torn.verb, torn.reason) == ("restart", "its last.ckpt is unreadable (empty)")
    moved = make_config("paper", device="meta", lr=0.5)
    refused = decide_resume(point, moved, "d", "c", exact=False)
    assert refused == Resume("refuse", ("lr 0.05 -> 0.5",), ("device 'cpu' -> 'meta'",))
    assert decide_resume(point, moved, "d", "c", exact=True).verb == "restart"
    elsewhere = make_config("paper", device="meta", lr=0.05)
    assert decide_resume(point, elsewhere, "d", "c", exact=False) == Resume(
        "continue", free=("device 'cpu' -> 'meta'",)
    )
    data = decide_resume(point, config, "e", "c", exact=False)
    assert data == Resume("refuse", ("data md5 d -> e",))
    assert decide_resume(point, config, "d", "new code", exact=False).verb == "continue"
    for md5, code, reason in (
        ("d", "new code", "code"),
        ("e", "c", "data"),
        ("e", "new code", "code and data"),
    ):
        restart = decide_resume(point, config, md5, code, exact=True)
        assert (restart.verb, restart.reason) == (
            "restart",
            f"it was trained with another {reason}",
        )
    bare = decide_resume(ResumePoint(point.path, {"epoch": 1}), config, "d", "c", exact=True)
    assert (bare.verb, bare.reason) == ("restart", "its last.ckpt records no config")
    older = {**state, "config": {k: v for k, v in state["config"].items() if k != "init"}}
    assert decide_resume(ResumePoint(point.path, older), config, "d", "c", exact=True).reason == (
        "it was trained with another config"
    )
