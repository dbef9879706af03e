"""TrainConfig, recipes, YAML/JSON files and command-line overrides."""

import dataclasses
import json

import pytest

from resnet_repro.cli import build_parser, config_from_args
from resnet_repro.config import ConfigError, TrainConfig, make_config
from resnet_repro.recipes import DEFAULT_RECIPE, RECIPES


def test_seed_recipe_holds_the_seed_setup():
    c = make_config("seed", version=1, resnet_size=18)
    assert (c.optimizer, c.lr, c.weight_decay, c.batch_size, c.epochs) == (
        "adam",
        1e-3,
        0.0,
        128,
        200,
    )
    assert c.schedule == "constant"
    assert (c.split_index, c.valid_fraction, c.checkpoint_every) == (45_000, 0.0, 10)
    # Fig. 4's 0.997 on batch_norm_relu_layer only; PyTorch's 0.1 in blocks and shortcuts.
    assert (c.start_output_bn_momentum, c.bn_momentum) == (0.997, 0.1)
    assert c.v2_projection_bn and c.bottleneck_stride == "3x3"  # Fig. 7; the skeleton's
    # skeleton main.py: 10 more epochs on all training images, then the test.
    assert (c.continue_epochs, c.last_epoch, c.bn_group_images) == (10, 210, 0)
    # Its skeleton's Model.train: num_batches = num_samples // batch_size.
    assert c.drop_last and not make_config("paper").drop_last


def test_paper_recipe_holds_he_et_al_2015():
    c = make_config("paper", version=1, resnet_size=3)
    assert (c.optimizer, c.momentum, c.weight_decay, c.batch_size, c.lr) == (
        "sgd",
        0.9,
        1e-4,
        128,
        0.1,
    )
    assert c.milestones == [32_000, 48_000] and c.lr_decay == 0.1 and c.max_iters == 64_000
    assert c.split_index == 50_000 and c.bn_momentum == 0.1  # all 50k images train
    assert (c.shortcut, c.normalization, c.bn_group_images) == ("A", "pixel_mean", 64)
    # He et al.'s released resnet-pre-act.lua: bare projection, the first 1x1 strides.
    assert (c.v2_projection_bn, c.bottleneck_stride, c.continue_epochs) == (False, "1x1", 0)
    assert make_config("paper", version=2, resnet_size=18).shortcut == "B"  # He et al. 2016
    assert c.epochs == 164  # 64k iterations of 391 steps (50k images, batch 128)
    assert c.epochs * ((50_000 + 127) // 128) >= c.max_iters > (c.epochs - 1) * 391
    assert make_config("seed").shortcut == "B"
    assert make_config("seed").normalization == "per_image"
    assert not c.warms_up  # ResNet-20 does not warm up
    deep = make_config("paper", version=1, resnet_size=18)  # ResNet-110
    assert deep.warms_up and deep.warmup_iters == 400 and deep.warmup_lr == 0.01
    assert make_config("paper", version=2, resnet_size=18).warms_up  # depth 164
    assert not make_config("paper", version=1, resnet_size=18, warmup_iters=0).warms_up
    assert make_config("paper", version=1, resnet_size=3, warmup_min_depth=0).warms_up


def test_each_recipe_defines_every_recipe_setting_and_defaults_come_from_one():
    fields = set(TrainConfig.recipe_fields())
    assert "lr" in fields and "seed" not in fields
    for name, recipe in RECIPES.items():
        assert set(recipe) == fields, name
    default = TrainConfig()
    assert {f: getattr(default, f) for f in fields} == RECIPES[DEFAULT_RECIPE]
    assert make_config() == make_config(DEFAULT_RECIPE)


def test_fast_recipe_sets_the_fast_path_settings():
    """The settings only; tests/unit/test_devices.py trains with them."""
    c = make_config("fast")
    assert c.nesterov and c.schedule == "onecycle" and c.label_smoothing == 0.1
    assert (c.precision, c.channels_last, c.compile) == ("bf16", True, True)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_gives_exactly_its_values(name):
    config = make_config(name, version=1, resnet_size=3)
    assert {f: getattr(config, f) for f in RECIPES[name]} == RECIPES[name]
    assert config.recipe == name


def test_yaml_and_json_round_trip(tmp_path):
    c = make_config("seed", version=2, resnet_size=8, seed=3)
    c.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == c
    (tmp_path / "c.json").write_text(json.dumps(c.to_dict()))
    assert TrainConfig.load(tmp_path / "c.json") == c
    assert c.config_hash() == TrainConfig.load(tmp_path / "c.json").config_hash()
    assert c.config_hash() != make_config("seed", version=2, resnet_size=8, seed=4).config_hash()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": "128"}, "batch_size must be int, got str '128'"),
        ({"epochs": 2.5}, "epochs must be int, got float 2.5"),
        ({"nesterov": 1}, "nesterov must be bool, got int 1"),
        ({"lr": True}, "lr must be float, got bool True"),
        ({"milestones": [1, "2"]}, r"milestones\[\] must be int"),
        ({"version": 3}, r"version must be one of \(1, 2\)"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"lr": 0.0}, r"^lr must be a finite number > 0, got 0.0$"),
        ({"lr": float("inf")}, r"^lr must be a finite number > 0, got inf$"),
        ({"max_iters": -5}, r"^max_iters must be >= 0 \(0: none\), got -5$"),
        ({"valid_fraction": 1.0}, r"^valid_fraction must be in \[0, 1\), got 1.0$"),
        ({"label_smoothing": 1.0}, r"^label_smoothing must be in \[0, 1\), got 1.0$"),
        ({"bn_group_images": 48}, r"^batch_size 128 is not a multiple of bn_group_images 48"),
        ({"bn_group_images": -1}, r"^bn_group_images must be >= 0 \(0: none\), got -1$"),
        ({"sync_bn": True}, r"^sync_bn normalizes over all ranks' batch_size images, bn_group_"),
        ({"continue_epochs": 10}, r"^continue_epochs 10 continues a constant learning rate"),
        ({"start_output_bn_momentum": 2.0}, r"^start_output_bn_momentum must be in \[0, 1\]"),
        ({"bottleneck_stride": "2x2"}, r"bottleneck_stride must be one of \('3x3', '1x1'\)"),
        ({"v1_shortcut": "C"}, r"v1_shortcut must be one of \('A', 'B'\)"),
        ({"colour": "red"}, "unknown config fields: colour"),
        ({"momentum": float("inf")}, r"^momentum must be in \[0, 1\), got inf$"),
        ({"momentum": -0.5}, r"^momentum must be in \[0, 1\), got -0.5$"),
        ({"bn_momentum": float("nan")}, r"^bn_momentum must be in \[0, 1\], got nan$"),
        ({"weight_decay": -1.0}, r"^weight_decay must be a finite number >= 0, got -1.0$"),
        ({"weight_decay": float("nan")}, r"^weight_decay must be a finite number >= 0, got nan$"),
        ({"lr_decay": 0.0}, r"^lr_decay must be a finite number > 0, got 0.0$"),
        ({"optimizer": "adam", "nesterov": True}, "nesterov is an option of the sgd optimizer"),
        ({"valid_fraction": 0.1, "split_index": 100}, "give one of them"),
    ],
)
def test_bad_fields(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("paper", **overrides)


def test_bad_file(tmp_path):
    (tmp_path / "c.yaml").write_text("batch_size: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"c.yaml: batch_size must be int"):
        TrainConfig.load(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.load(tmp_path / "d.yaml")


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown recipe 'best'"):
        make_config("best")


def parse(*argv):
    return config_from_args(build_parser().parse_args(["train", "--out", "x", *argv]))


def test_command_line_overrides_recipe_and_file(tmp_path):
    c = parse(
        "--recipe",
        "seed",
        "--resnet-version",
        "2",
        "--resnet-size",
        "8",
        "--no-nesterov",
        "--milestones",
        "5",
        "9",
        "--lr",
        "0.01",
    )
    assert (c.recipe, c.version, c.resnet_size, c.lr, c.optimizer) == ("seed", 2, 8, 0.01, "adam")
    assert c.milestones == [5, 9] and c.nesterov is False
    c.save(tmp_path / "c.yaml")
    again = parse("--config", str(tmp_path / "c.yaml"), "--epochs", "7")
    assert again.epochs == 7 and again.lr == 0.01 and again.version == 2


def test_an_unquoted_yaml_float_gets_a_hint(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 1e-3\n")
    with pytest.raises(ConfigError, match=r"YAML reads 1e-3 as text: write it with a dot, 1.0e-03"):
        TrainConfig.load(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"lr must be float, got str 'fast'$"):
        make_config("paper", lr="fast")


def test_boundary_values_are_accepted():
    make_config("paper", valid_fraction=0.0, label_smoothing=0.0, max_iters=0, lr=1e-12)
    make_config("paper", valid_fraction=0.99, label_smoothing=0.99)


def test_custom_recipe_starts_from_the_defaults():
    custom = make_config("custom", lr=0.5)
    assert custom.recipe == "custom" and custom.lr == 0.5
    assert custom.to_dict() == {**TrainConfig(lr=0.5).to_dict(), "recipe": "custom"}


def test_config_file_lists_fields_in_the_dataclass_order(tmp_path):
    make_config("seed").save(tmp_path / "c.yaml")
    keys = [line.split(":")[0] for line in (tmp_path / "c.yaml").read_text().splitlines()]
    assert keys[:4] == ["version", "resnet_size", "num_classes", "first_num_filters"]


def test_unreadable_files_and_non_lists_are_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: cannot read config: "):
        TrainConfig.load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"^milestones must be a list, got str '3'$"):
        make_config("paper", milestones="3")


def test_each_fields_role_and_bounds_live_in_its_metadata():
    """The lists a checkpoint, a resume and the projection use are derived from each field's
    metadata, not kept by hand."""
    from resnet_repro.config import fields_with_role, speed_fields

    assert fields_with_role("architecture") == (
        "version",
        "resnet_size",
        "num_classes",
        "first_num_filters",
        "v1_shortcut",
        "v2_projection_bn",
        "bottleneck_stride",
        "init",
    )
    assert set(fields_with_role("runtime")) == {
        "device",
        "data",
        "cache_dir",
        "checkpoint_every",
        "eval_batch_size",
    }
    assert set(fields_with_role("length")) == {"epochs", "continue_epochs", "max_iters"}
    assert {"batch_size", "bn_group_images", "precision", "cuda_graph"} <= set(speed_fields())
    assert "lr" not in speed_fields() and "seed" not in speed_fields()
    assert make_config("seed", version=1).architecture_fields()[-2:] == ("v1_shortcut", "init")
    assert "v1_shortcut" not in make_config("seed", version=2).architecture_fields()


def test_every_fields_metadata_is_complete_and_well_formed():
    """What ``_setting`` and ``_recipe_setting`` build at import time (where mutation testing
    cannot switch them), field by field: every key, of its type, a help text, a role, the
    recipe settings' defaults from the default recipe, bounds that parse, fresh list defaults."""
    from resnet_repro.config import ROLES, within

    keys = {"help", "choices", "recipe", "role", "speed", "minimum", "bounds"}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        assert set(meta) == keys, f.name
        assert isinstance(meta["help"], str) and len(meta["help"]) > 5, f.name
        assert meta["role"] in ROLES and isinstance(meta["speed"], bool), f.name
        assert meta["choices"] is None or isinstance(meta["choices"], tuple), f.name
        assert meta["minimum"] in (None, 0, 1), f.name
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if meta["recipe"] is True:
            assert default == RECIPES[DEFAULT_RECIPE][f.name], f.name
        else:
            assert meta["recipe"] is False and f.name not in RECIPES[DEFAULT_RECIPE], f.name
        if meta["choices"] is not None:
            assert default in meta["choices"], f.name
        if meta["bounds"] is not None:
            assert meta["bounds"][0] in "[(" and meta["bounds"][-1] in ")]", f.name
            assert within(default, meta["bounds"]), f.name
        if isinstance(default, list):
            assert f.default_factory() is not f.default_factory(), f.name
    minimum = {f.name: f.metadata["minimum"] for f in dataclasses.fields(TrainConfig)}
    assert {name for name, low in minimum.items() if low == 1} == {
        "resnet_size",
        "epochs",
        "batch_size",
        "checkpoint_every",
        "eval_batch_size",
    }
    assert {name for name, low in minimum.items() if low == 0} == {
        "bn_group_images",
        "continue_epochs",
        "max_iters",
        "warmup_iters",
        "warmup_min_depth",
        "limit_train_batches",
        "limit_eval_images",
    }


def test_an_interval_includes_its_ends_as_written():
    assert make_config("paper", bn_momentum=1.0).bn_momentum == 1.0  # [0, 1]
    assert make_config("paper", bn_momentum=0.0).bn_momentum == 0.0
    with pytest.raises(ConfigError, match=r"^label_smoothing must be in \[0, 1\), got 1.0$"):
        make_config("paper", label_smoothing=1.0)
    with pytest.raises(ConfigError, match=r"^bn_momentum must be in \[0, 1\], got 1.5$"):
        make_config("paper", bn_momentum=1.5)
    with pytest.raises(ConfigError, match=r"^lr must be a finite number > 0, got 0.0$"):
        make_config("paper", lr=0.0)


def test_each_combined_rule_in_its_own_words():
    with pytest.raises(ConfigError) as e:
        make_config("paper", max_iters=-1)
    assert str(e.value) == "max_iters must be >= 0 (0: none), got -1"
    with pytest.raises(ConfigError) as e:
        make_config("paper", epochs=0)
    assert str(e.value) == "epochs must be >= 1, got 0"
    with pytest.raises(ConfigError) as e:
        make_config("seed", nesterov=True)
    assert str(e.value) == "nesterov is an option of the sgd optimizer; leave it off for adam"
    graphs = {"cuda_graph": True, "compile": True, "compile_mode": "reduce-overhead"}
    with pytest.raises(ConfigError) as e:
        make_config("paper", **graphs)
    assert str(e.value) == (
        "cuda_graph and compile_mode reduce-overhead both capture CUDA graphs; keep one "
        "(cuda_graph also captures the optimizer)"
    )
    for one_off in ({"cuda_graph": False}, {"compile": False}, {"compile_mode": "default"}):
        make_config("paper", **{**graphs, **one_off})
    with pytest.raises(ConfigError) as e:
        make_config("paper", batch_size=200)
    assert str(e.value).endswith(
        "give --batch-size a multiple of 64, e.g. 192, or --bn-group-images 0"
    )
    assert make_config("paper", batch_size=64).batch_size == 64  # one group
    assert make_config("paper", batch_size=40).batch_size == 40  # one group, smaller
    with pytest.raises(ConfigError) as e:
        make_config("paper", sync_bn=True)
    assert str(e.value).endswith("give --bn-group-images 0 with --sync-bn, or leave out --sync-bn")
    make_config("paper", sync_bn=True, bn_group_images=0)
    with pytest.raises(ConfigError) as e:
        make_config("seed", continue_epochs=1, max_iters=10)
    assert str(e.value) == (
        "continue_epochs 1 continues a constant learning rate; schedule 'constant' with "
        "max_iters 10 has no rule for the extra epochs: give --continue-epochs 0"
    )


def test_the_config_hash_is_of_the_canonical_json():
    import hashlib

    config = make_config("seed")
    shuffled = dict(reversed(list(config.to_dict().items())))
    canonical = json.dumps(shuffled, sort_keys=True).encode()
    assert config.config_hash() == hashlib.sha256(canonical).hexdigest()


def test_split_index_alone_and_unknown_fields():
    assert make_config("paper", split_index=100).split_index == 100
    assert make_config("paper", split_index=100, valid_fraction=0.0).split_index == 100
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"zz": 1, "aa": 2})
    assert str(e.value) == "unknown config fields: aa, zz"
    with pytest.raises(ConfigError) as e:
        make_config("paper", split_index=100, valid_fraction=0.1)
    assert str(e.value) == (
        "split_index and valid_fraction both say where validation starts; give one of them"
    )


def test_a_params_file_is_a_mapping_with_runs(tmp_path):
    from resnet_repro.config import load_params

    path = tmp_path / "params.yaml"
    path.write_text("runs:\n  r: {}\nseeds: [0]\n")
    assert load_params(path) == {"runs": {"r": {}}, "seeds": [0]}
    assert load_params(str(path)) == load_params(path)
    for text in ("runs: [a]\n", "- runs\n", "seeds: [0]\n", "runs: 3\n"):
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_params(path)
        assert str(e.value) == f"{path}: expected a mapping with a 'runs' mapping"
    path.write_text("runs: {\n")
    with pytest.raises(ConfigError, match=r"params.yaml: cannot read params: "):
        load_params(path)
    with pytest.raises(ConfigError, match=r"none.yaml: cannot read params: "):
        load_params(tmp_path / "none.yaml")


# config.yaml as the code before the config's sections wrote it (at c5c46e9: fields in another
# order), with the config_hash that code computed for it.
CONFIG_BEFORE_SECTIONS = """\
version: 2
resnet_size: 8
num_classes: 10
first_num_filters: 16
v1_shortcut: B
bn_momentum: 0.1
start_output_bn_momentum: 0.997
v2_projection_bn: true
bottleneck_stride: 3x3
init: pytorch
bn_group_images: 0
normalization: per_image
recipe: seed
epochs: 200
continue_epochs: 10
max_iters: 0
batch_size: 128
drop_last: true
optimizer: adam
lr: 0.001
momentum: 0.9
weight_decay: 0.0
nesterov: false
schedule: constant
milestones: []
lr_decay: 0.1
warmup_iters: 0
warmup_lr: 0.01
warmup_min_depth: 0
label_smoothing: 0.0
seed: 3
device: auto
precision: fp32
channels_last: false
compile: false
compile_mode: default
cuda_graph: false
deterministic: false
sync_bn: false
data: data
cache_dir: ''
split_index: 45000
valid_fraction: 0.0
checkpoint_every: 10
eval_batch_size: 1000
limit_train_batches: 0
limit_eval_images: 0
"""
HASH_BEFORE_SECTIONS = "3f486a0d1b90b420f58fe428ab18c3e9fcdd5b36bce6696f8a791891426ce195"


def test_a_config_written_before_the_sections_loads_with_its_hash(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_BEFORE_SECTIONS)
    config = TrainConfig.load(path)
    assert config == make_config("seed", version=2, resnet_size=8, seed=3)
    assert config.config_hash() == HASH_BEFORE_SECTIONS
    config.save(path)
    assert TrainConfig.load(path).config_hash() == HASH_BEFORE_SECTIONS


def test_each_section_holds_what_its_consumer_reads():
    """build_model reads the network's section alone, make_optimizer the optimizer's: each
    works on a bare section, and the sections partition the config's fields."""
    from resnet_repro.config import DataSettings, NetworkSettings, OptimizerSettings, RunSettings
    from resnet_repro.optim import make_optimizer
    from resnet_repro.runtime import build_model

    sections = (NetworkSettings, OptimizerSettings, DataSettings, RunSettings)
    names = [f.name for s in sections for f in dataclasses.fields(s)]
    assert names == [f.name for f in dataclasses.fields(TrainConfig)]
    network = build_model(NetworkSettings(version=2, resnet_size=1))
    assert network.version == 2
    import torch

    optimizer = make_optimizer(
        OptimizerSettings(optimizer="sgd", lr=0.5), network.parameters(), torch.device("cpu")
    )
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["lr"] == 0.5
