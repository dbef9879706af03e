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
from resnet_repro.config import ConfigError, make_config


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


def test_a_copied_checkpoint_is_the_same_bytes_written_atomically(tmp_path):
    from resnet_repro.checkpoint import copy_checkpoint

    save_checkpoint(tmp_path / "model-2.ckpt", {"model": {"w": torch.ones(3)}, "config": {}})
    copy_checkpoint(tmp_path / "model-2.ckpt", tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").read_bytes() == (tmp_path / "model-2.ckpt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "model-2.ckpt"]


def test_a_full_disk_says_what_to_do(tmp_path, monkeypatch):
    def full(obj, f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "new.ckpt", {"model": {}, "config": {}})
    assert str(info.value) == (
        f"{tmp_path / 'new.ckpt'}: cannot be written ([Errno 28] No space left on device); no "
        "new.ckpt written. Free disk space, then rerun with --resume"
    )


def test_a_folder_given_as_a_checkpoint_names_what_it_holds(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} is a folder holding no checkpoint (*.ckpt); give a checkpoint file"
    )
    for epoch in (10, 20, 30, 40):
        (tmp_path / f"model-{epoch}.ckpt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} is a folder; give one of its checkpoints (model-10.ckpt, model-20.ckpt, "
        "model-30.ckpt, model-40.ckpt)"
    )
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert str(info.value).endswith("(last.ckpt, model-10.ckpt, model-20.ckpt, model-30.ckpt, ...)")


def test_a_checkpoint_loads_where_it_is_asked_to(tmp_path):
    save_checkpoint(tmp_path / "c.ckpt", {"model": {"w": torch.ones(2)}, "config": {}})
    state = load_checkpoint(tmp_path / "c.ckpt", map_location="meta")
    assert state["model"]["w"].device.type == "meta"


def test_the_code_digest_is_of_each_files_name_and_bytes(monkeypatch, tmp_path):
    import hashlib

    (tmp_path / "b.py").write_bytes(b"y")
    (tmp_path / "a.py").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"not code")
    monkeypatch.setattr(checkpoint_module, "PACKAGE_DIR", tmp_path)
    expected = hashlib.sha256(b"a.py\0x\0b.py\0y\0").hexdigest()
    assert code_digest() == expected


def test_messages_of_the_architecture_and_device_checks_in_full():
    state = {"config": make_config("paper", version=1, resnet_size=3).to_dict()}
    wider = make_config("paper", version=1, resnet_size=5, first_num_filters=32)
    with pytest.raises(CheckpointError) as info:
        check_architecture(state, wider, Path("r/c"))
    assert str(info.value) == (
        "r/c: checkpoint of another architecture: resnet_size 3 (checkpoint) vs 5 (run); "
        "first_num_filters 16 (checkpoint) vs 32 (run). To go on, resume with --resnet-size 3 "
        "--first-num-filters 16 to continue it, or train into another --out"
    )
    with pytest.raises(CheckpointError) as info:
        check_architecture(state, wider, Path("r/c"), resuming=False)
    assert str(info.value).endswith(
        "To go on, r/config.yaml does not describe this checkpoint's network; put the run "
        "folder's own config.yaml back, or evaluate the checkpoint with predict"
    )
    with pytest.raises(CheckpointError) as info:
        check_device_type({"device_type": "cuda"}, "cpu", Path("c"))
    assert str(info.value) == (
        "c: written by a run on cuda, but this run is on cpu; the augmentation's random stream "
        "differs between device types, so the run cannot continue bitwise here. Resume with "
        "--device cuda, or start a new run in another folder"
    )


def test_the_option_that_sets_a_field():
    from resnet_repro.checkpoint import option

    assert option("v2_projection_bn", True) == "--v2-projection-bn"
    assert option("v2_projection_bn", False) == "--no-v2-projection-bn"
    assert option("resnet_size", 3) == "--resnet-size 3"


def test_torchs_reasons_in_one_line():
    from resnet_repro.checkpoint import _reason

    class Sized:
        def __init__(self, size):
            self.size = size

        def stat(self):
            return type("Stat", (), {"st_size": self.size})()

    full = Sized(1)
    assert _reason(Sized(0), RuntimeError("x")) == "the file is empty"
    unpickler = RuntimeError("Weights only load failed.\nWeightsUnpickler error: bad GLOBAL\nmore")
    assert _reason(full, unpickler) == (
        "it holds something other than tensors and plain values: bad GLOBAL"
    )
    twice = RuntimeError("WeightsUnpickler error: first\nWeightsUnpickler error: second")
    assert _reason(full, twice).endswith("values: first")
    advice = RuntimeError("Weights only load failed. Advice.\n\nThe reason\nmore\n\nthird")
    assert _reason(full, advice).endswith("values: The reason")
    two = RuntimeError("Weights only load failed. Advice.\n\nThe reason")
    assert _reason(full, two).endswith("values: The reason")
    assert _reason(full, RuntimeError("Weights only load failed. Advice.")).endswith(
        "values: refused by torch"
    )
    assert _reason(full, OSError("first line\nsecond")) == "first line"
    assert _reason(full, ValueError("  ")) == "ValueError"


def test_a_length_free_schedule_lets_a_resume_change_the_length():
    config = make_config("paper", device="cpu", schedule="multistep", epochs=10)
    state = {"config": config.to_dict(), "data_md5": "d", "code_digest": "c", "epoch": 1}
    longer = make_config("paper", device="cpu", schedule="multistep", epochs=20)
    assert decide_resume(ResumePoint(Path("last.ckpt"), state), longer, "d", "c", exact=False) == (
        Resume("continue", free=("epochs 10 -> 20",))
    )
    onecycle = {**state, "config": {**state["config"], "schedule": "onecycle"}}
    point = ResumePoint(Path("last.ckpt"), onecycle)
    assert decide_resume(point, longer, "d", "c", exact=False) == Resume(
        "refuse", ("epochs 10 -> 20", "schedule 'onecycle' -> 'multistep'")
    )
    restart = decide_resume(ResumePoint(Path("last.ckpt"), state), longer, "e", "c", exact=True)
    assert restart == Resume(
        "restart",
        ("data md5 d -> e",),
        ("epochs 10 -> 20",),
        "it was trained with another config and data",
    )


def test_a_resume_may_not_record_its_epochs_otherwise():
    from resnet_repro.checkpoint import check_epochs

    seed = make_config("seed", epochs=4, continue_epochs=2)
    check_epochs(5, 4, seed, Path("r/last.ckpt"))  # unchanged
    check_epochs(6, 4, seed, Path("r/last.ckpt"))  # the last epoch: nothing left, recorded
    check_epochs(3, 3, make_config("seed", epochs=4, continue_epochs=2), Path("r/last.ckpt"))
    check_epochs(3, 2, make_config("paper", epochs=4), Path("r/last.ckpt"))  # no continuation
    with pytest.raises(ConfigError) as info:
        check_epochs(7, 4, seed, Path("r/last.ckpt"))
    assert str(info.value) == (
        "r is at epoch 7: 4 epochs (and 2 continued) would train nothing and record a shorter "
        "run; give --epochs 5 or more"
    )
    with pytest.raises(CheckpointError) as info:
        check_epochs(3, 2, seed, Path("r/last.ckpt"))
    assert str(info.value) == (
        "r/last.ckpt: epoch 3 was trained as a continued epoch (2 training epochs, then the "
        "continued ones); --epochs 4 would record it otherwise. Resume with --epochs 2"
    )
    with pytest.raises(CheckpointError) as info:
        check_epochs(3, 4, make_config("seed", epochs=2, continue_epochs=2), Path("c"))
    assert str(info.value).endswith(
        "epoch 3 was trained as a training epoch (4 training epochs, then the continued ones); "
        "--epochs 2 would record it otherwise. Resume with --epochs 4 (or 3 or more)"
    )
    check_epochs(4, 4, make_config("seed", epochs=5, continue_epochs=2), Path("c"))
    check_epochs(4, 5, make_config("seed", epochs=4, continue_epochs=2), Path("c"))
    with pytest.raises(CheckpointError) as info:
        check_epochs(4, 4, make_config("seed", epochs=3, continue_epochs=2), Path("c"))
    assert "epoch 4 was trained as a training epoch" in str(info.value)
