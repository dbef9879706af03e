"""One training configuration: its fields (each with its help, choices, role and bounds), its
validation when made, and its (de)serialization.

``TrainConfig`` holds every hyper-parameter of a run in one place; the training engine reads
nothing else. Its fields come in four sections (the network, the optimizer, the data, the run),
each a dataclass it inherits, so that a function needing one section takes that alone while
``config.yaml`` stays one flat mapping. The recipes, named sets of field values applied before
the user's overrides, are in ``recipes.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.recipes import DEFAULT_RECIPE, RECIPES

# The architecture fields of one version's network alone.
V1_ONLY_FIELDS = ("v1_shortcut",)
V2_ONLY_FIELDS = ("v2_projection_bn", "bottleneck_stride")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


# A field's role, in its metadata: what a checkpoint and a resume make of it.
ROLES = (
    "architecture",  # decides the network: a checkpoint fits only a config equal on it
    "runtime",  # where and how the run is kept, not what it computes: a resume may change it
    "length",  # how long: a resume may change it when the schedule does not depend on it
    "experiment",  # anything else: a resume may change it only with --allow-changes
)


# Both run at import time, before mutation testing can switch a mutant on, so they are not
# mutated; test_config.py's metadata test pins every field they build.
# pragma: no mutate start
def _setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    recipe: bool = False,
    role: str = "experiment",
    speed: bool = False,
    minimum: int | None = None,
    bounds: str | None = None,
) -> Any:
    """A field with its default, its help text (the command line's), allowed values
    (``choices``, an integer ``minimum`` or a float's ``bounds``, an interval such as
    ``"[0, 1)"``), its ``role`` and whether it changes the time of a step (``speed``)."""
    meta = {
        "help": help,
        "choices": choices,
        "recipe": recipe,
        "role": role,
        "speed": speed,
        "minimum": minimum,
        "bounds": bounds,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _recipe_setting(name: str, help: str, **options: Any) -> Any:
    """A field every recipe sets; its default is the default recipe's value."""
    return _setting(RECIPES[DEFAULT_RECIPE][name], help, recipe=True, **options)


# pragma: no mutate end


def bounds_text(bounds: str) -> str:
    """``"[0, 1)"`` -> ``in [0, 1)``; an infinite high end -> ``a finite number > 0``."""
    low, high = (end.strip() for end in bounds[1:-1].split(","))
    if high == "inf":
        return f"a finite number {'>=' if bounds[0] == '[' else '>'} {low}"
    return f"in {bounds}"


def within(value: float, bounds: str) -> bool:
    """Whether ``value`` lies in the interval ``bounds``, written as in mathematics: ``"[0, 1)"``
    includes 0 and not 1. NaN never does."""
    low, high = (float(end) for end in bounds[1:-1].split(","))
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[-1] == "]" else value < high
    return above and below


@dataclass(frozen=True)
class NetworkSettings:
    """The network's section: all ``build_model`` reads (its architecture fields decide which
    checkpoints fit)."""

    version: int = _setting(
        1,
        "1: ResNet v1, standard post-activation blocks; 2: v2, pre-activation bottlenecks",
        choices=(1, 2),
        role="architecture",
        speed=True,
    )
    resnet_size: int = _setting(
        3,
        "blocks per stack, n: depth 6n+2 for v1 (n=18: ResNet-110), 9n+2 for v2",
        role="architecture",
        speed=True,
        minimum=1,
    )
    num_classes: int = _setting(10, "outputs of the final layer", role="architecture")
    first_num_filters: int = _setting(
        16, "channels of the first stack (16 in the papers)", role="architecture"
    )
    v1_shortcut: str = _recipe_setting(
        "v1_shortcut",
        "v1's shortcut where a block changes shape: A identity + zero padding (He et al. 2015 on "
        "CIFAR), B 1x1 convolution + BN (the seed's); v2 always projects (He et al. 2016)",
        choices=("A", "B"),
        role="architecture",
        speed=True,
    )
    bn_momentum: float = _recipe_setting(
        "bn_momentum",
        "PyTorch BN momentum (weight of each batch in the running statistics) of every BN in "
        "the blocks and their shortcuts",
        bounds="[0, 1]",
    )
    start_output_bn_momentum: float = _recipe_setting(
        "start_output_bn_momentum",
        "the same for the BN-ReLU after v1's first convolution and before v2's pooling (the "
        "seed's batch_norm_relu_layer, 0.997)",
        bounds="[0, 1]",
    )
    v2_projection_bn: bool = _recipe_setting(
        "v2_projection_bn",
        "v2: a BN after the projection shortcut's 1x1 convolution (the seed's)",
        role="architecture",
        speed=True,
    )
    bottleneck_stride: str = _recipe_setting(
        "bottleneck_stride",
        "v2: the convolution a downsampling bottleneck strides, 3x3 (TensorFlow's official "
        "model, the seed's skeleton) or the first 1x1 (He et al.'s released code)",
        choices=("3x3", "1x1"),
        role="architecture",
        speed=True,
    )
    init: str = _recipe_setting(
        "init",
        "weight initialization: he, normal std sqrt(2/fan_out) convolutions and a zero fully "
        "connected bias (He et al.'s released code); pytorch, nn.Conv2d's and nn.Linear's own "
        "defaults (the seed's code)",
        choices=("he", "pytorch"),
        role="architecture",
    )

    @property
    def depth(self) -> int:
        """The papers' depth: weighted layers on the main path."""
        from resnet_repro.net import resnet_depth  # torch: not needed by --help and fetch

        return resnet_depth(self.version, self.resnet_size)

    @property
    def shortcut(self) -> str:
        """The shortcut the network uses: ``v1_shortcut`` for v1; v2's projection (B)."""
        return self.v1_shortcut if self.version == 1 else "B"


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimizer's section: the optimizer and its learning-rate schedule, the batch, and
    how long the run trains."""

    epochs: int = _recipe_setting(
        "epochs", "epochs to train (max_iters may stop earlier)", role="length", minimum=1
    )
    continue_epochs: int = _recipe_setting(
        "continue_epochs",
        "then this many more epochs on all training images, validation ones included (the "
        "seed's re-training; constant lr only); the last model is the one tested",
        role="length",
        minimum=0,
    )
    max_iters: int = _recipe_setting(
        "max_iters",
        "stop after this many optimizer steps (0: no limit besides epochs)",
        role="length",
        minimum=0,
    )
    batch_size: int = _recipe_setting(
        "batch_size", "images per optimizer step (all ranks)", speed=True, minimum=1
    )
    drop_last: bool = _recipe_setting(
        "drop_last",
        "drop each epoch's last, smaller batch (the seed's skeleton: num_samples // batch_size)",
    )
    bn_group_images: int = _recipe_setting(
        "bn_group_images",
        "training BN statistics over groups of this many images of each step, on any number "
        "of GPUs (64: He et al.'s 128 images on two GPUs); 0: the whole batch of each process",
        speed=True,
        minimum=0,
    )
    optimizer: str = _recipe_setting("optimizer", "optimizer", choices=("sgd", "adam"))
    lr: float = _recipe_setting("lr", "base learning rate", bounds="(0, inf)")
    momentum: float = _recipe_setting("momentum", "SGD momentum", bounds="[0, 1)")
    weight_decay: float = _recipe_setting("weight_decay", "L2 weight decay", bounds="[0, inf)")
    nesterov: bool = _recipe_setting("nesterov", "Nesterov momentum (SGD)")
    schedule: str = _recipe_setting(
        "schedule",
        "learning-rate schedule",
        choices=("constant", "multistep", "onecycle", "cosine"),
    )
    # _setting returns a dataclasses.field with a default_factory for lists (ruff cannot see it).
    milestones: list[int] = _recipe_setting(  # noqa: RUF009
        "milestones", "multistep: iterations at which the lr is multiplied by lr_decay"
    )
    lr_decay: float = _recipe_setting(
        "lr_decay", "multistep: factor applied at each milestone", bounds="(0, inf)"
    )
    warmup_iters: int = _recipe_setting(
        "warmup_iters", "multistep: iterations at warmup_lr before lr (0: none)", minimum=0
    )
    warmup_lr: float = _recipe_setting(
        "warmup_lr", "multistep: the warm-up learning rate", bounds="(0, inf)"
    )
    warmup_min_depth: int = _recipe_setting(
        "warmup_min_depth",
        "warm up only networks at least this deep (He et al.: ResNet-110 only); 0: all",
        minimum=0,
    )
    label_smoothing: float = _recipe_setting(
        "label_smoothing", "cross-entropy label smoothing", bounds="[0, 1)"
    )

    @property
    def last_epoch(self) -> int:
        """The run's final epoch: ``epochs``, then ``continue_epochs`` on all training images."""
        return self.epochs + self.continue_epochs


@dataclass(frozen=True)
class DataSettings:
    """The data's section: where the images come from, how they are normalized and split."""

    data: str = _setting(
        "data", "CIFAR-10 archive, or a folder holding cifar-10-batches-py/", role="runtime"
    )
    cache_dir: str = _setting(
        "",
        "decoded-array cache folder ('': $RESNET_REPRO_CACHE, else the platform's user cache)",
        role="runtime",
    )
    normalization: str = _recipe_setting(
        "normalization",
        "per_image: each image's per-channel standardization (the seed's); pixel_mean: the "
        "training set's per-pixel mean subtracted (He et al.)",
        choices=("per_image", "pixel_mean"),
        speed=True,
    )
    split_index: int = _recipe_setting(
        "split_index",
        "the first split_index training images train, the rest validate (50000: all train)",
    )
    valid_fraction: float = _setting(
        0.0,
        "> 0: keep this share of the training images for validation instead",
        bounds="[0, 1)",
    )


@dataclass(frozen=True)
class RunSettings:
    """The run's section: its recipe and seed, where and how it runs, what it keeps."""

    recipe: str = _setting(
        DEFAULT_RECIPE,
        "named preset the other settings start from",
        choices=(*RECIPES, "custom"),
    )
    seed: int = _setting(0, "decides every random draw of the run (init, order, augmentation)")
    device: str = _setting(
        "auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", role="runtime"
    )
    precision: str = _recipe_setting(
        "precision", "fp32, or bf16 autocast", choices=("fp32", "bf16"), speed=True
    )
    channels_last: bool = _recipe_setting(
        "channels_last", "channels-last memory layout", speed=True
    )
    compile: bool = _recipe_setting(
        "compile", "torch.compile the model (static shapes)", speed=True
    )
    compile_mode: str = _setting(
        "default",
        "torch.compile mode; reduce-overhead replays CUDA graphs, removing per-kernel launch "
        "costs on a GPU (its speed there is unmeasured so far)",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        speed=True,
    )
    cuda_graph: bool = _setting(
        False,
        "capture each full-size training step (forward, backward, fused optimizer) as one CUDA "
        "graph and replay it, removing per-kernel launch costs (CUDA only; one process)",
        speed=True,
    )
    deterministic: bool = _setting(False, "deterministic kernels (bitwise repeatable on a GPU)")
    sync_bn: bool = _setting(False, "SyncBatchNorm across torchrun ranks (CUDA only)")
    checkpoint_every: int = _recipe_setting(
        "checkpoint_every", "epochs between model-N.ckpt", role="runtime", minimum=1
    )
    eval_batch_size: int = _setting(
        1000, "images per evaluation batch", role="runtime", speed=True, minimum=1
    )
    # rehearsal amounts: a run with either set is a rehearsal, marked so in its metrics,
    # comparison and report (see pipeline/rehearsal.yaml)
    limit_train_batches: int = _setting(
        0, "rehearsal: at most this many optimizer steps per epoch (0: every batch)", minimum=0
    )
    limit_eval_images: int = _setting(
        0, "rehearsal: evaluate on the first this many images of each split (0: all)", minimum=0
    )

    @property
    def is_rehearsal(self) -> bool:
        """Whether amounts were shrunk for a rehearsal: its accuracies mean nothing."""
        return self.limit_train_batches > 0 or self.limit_eval_images > 0


@dataclass(frozen=True)
class TrainConfig(RunSettings, DataSettings, OptimizerSettings, NetworkSettings):
    """Every setting of one training run, in four sections (a function that needs one section
    takes it: ``build_model`` the network's, ``make_optimizer`` the optimizer's); its fields are
    the sections' in the order network, optimizer, data, run. ``make_config`` fills it from a
    recipe. Settings marked by ``_recipe_setting`` are defined by each recipe in ``RECIPES``;
    the dataclass defaults of those are the default recipe's (``paper``), taken from there.
    """

    def __post_init__(self) -> None:
        # Valid once made: a config is changed only through dataclasses.replace, which
        # validates the new one.
        self.validate()

    def validate(self) -> TrainConfig:
        """Type and range checks; returns self. Raises ConfigError naming the field."""
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ConfigError(
                    f"{f.name} must be one of {allowed}, got {getattr(self, f.name)!r}"
                )
        for f in dataclasses.fields(self):
            value, minimum, bounds = (
                getattr(self, f.name),
                f.metadata["minimum"],
                f.metadata["bounds"],
            )
            if minimum is not None and value < minimum:
                none = " (0: none)" if minimum == 0 else ""
                raise ConfigError(f"{f.name} must be >= {minimum}{none}, got {value}")
            if bounds is not None and not within(value, bounds):
                raise ConfigError(f"{f.name} must be {bounds_text(bounds)}, got {value}")
        if self.optimizer == "adam" and self.nesterov:
            raise ConfigError("nesterov is an option of the sgd optimizer; leave it off for adam")
        if self.cuda_graph and self.compile and self.compile_mode == "reduce-overhead":
            raise ConfigError(
                "cuda_graph and compile_mode reduce-overhead both capture CUDA graphs; keep one "
                "(cuda_graph also captures the optimizer)"
            )
        group = self.bn_group_images
        if group and self.batch_size > group and self.batch_size % group:
            raise ConfigError(
                f"batch_size {self.batch_size} is not a multiple of bn_group_images {group} (BN "
                f"statistics over groups of {group} images, the {self.recipe} recipe's unless "
                f"given): give --batch-size a multiple of {group}, e.g. "
                f"{max(group, self.batch_size // group * group)}, or --bn-group-images 0"
            )
        if self.sync_bn and self.bn_group_images:
            raise ConfigError(
                f"sync_bn normalizes over all ranks' batch_size images, bn_group_images over "
                f"groups of {self.bn_group_images}: give --bn-group-images 0 with --sync-bn, or "
                "leave out --sync-bn"
            )
        if self.continue_epochs and (self.schedule != "constant" or self.max_iters):
            raise ConfigError(
                f"continue_epochs {self.continue_epochs} continues a constant learning rate; "
                f"schedule {self.schedule!r} with max_iters {self.max_iters} has no rule for the "
                "extra epochs: give --continue-epochs 0"
            )
        return self

    def architecture_fields(self) -> tuple[str, ...]:
        """The architecture fields that shape this config's network (v1 has no bottleneck)."""
        other = V2_ONLY_FIELDS if self.version == 1 else V1_ONLY_FIELDS
        return tuple(k for k in fields_with_role("architecture") if k not in other)

    @property
    def warms_up(self) -> bool:
        """Whether this run starts at ``warmup_lr``: the recipe's rule, e.g. He et al. warmed
        up ResNet-110 only."""
        return self.warmup_iters > 0 and self.depth >= self.warmup_min_depth

    @staticmethod
    def recipe_fields() -> tuple[str, ...]:
        """The fields each recipe defines."""
        return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["recipe"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of every field."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a YAML or JSON file (JSON is YAML)."""
        try:
            values = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from e
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields")
        try:
            return cls.from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e


def flag(name: str) -> str:
    """The command-line option of field ``name``. The network's ``version`` is
    ``--resnet-version``: a bare ``--version`` is the program's (``--version`` after ``train``
    still works, with a note)."""
    return "--resnet-version" if name == "version" else "--" + name.replace("_", "-")


def fields_with_role(role: str) -> tuple[str, ...]:
    """The names of the fields whose metadata gives them ``role`` (one of ROLES)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == role)


def speed_fields() -> tuple[str, ...]:
    """The fields that change the time of a training step or an evaluation."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["speed"])


def _check_type(name: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, got {type(value).__name__} {value!r}")
        for v in value:
            _check_type(f"{name}[]", v, item)
        return
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        hint_text = ""
        if hint is float and isinstance(value, str) and _is_number(value):
            # YAML 1.1 (PyYAML) reads 1e-3 as a string: a float needs a dot, 1.0e-3.
            hint_text = f"; YAML reads {value} as text: write it with a dot, {float(value):.1e}"
        raise ConfigError(
            f"{name} must be {hint.__name__}, got {type(value).__name__} {value!r}{hint_text}"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def make_config(recipe: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
    """A validated config: the recipe's values, then ``overrides`` (any ``TrainConfig`` field).

    ``custom`` starts from the dataclass defaults (the default recipe's values)."""
    if recipe not in RECIPES and recipe != "custom":
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} or custom")
    if overrides.get("valid_fraction", 0) and "split_index" in overrides:
        raise ConfigError(
            "split_index and valid_fraction both say where validation starts; give one of them"
        )
    values: dict[str, Any] = {"recipe": recipe, **RECIPES.get(recipe, {}), **overrides}
    return TrainConfig.from_dict(values)


def load_params(path: str | Path) -> dict[str, Any]:
    """A params.yaml: the study's grid of runs and the pipeline's settings."""
    try:
        params = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read params: {e}") from e
    if not isinstance(params, dict) or not isinstance(params.get("runs"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'runs' mapping")
    return params
