"""ResNet v1 (post-activation standard blocks) and v2 (pre-activation bottlenecks) for CIFAR.

This module owns the network architecture and its initialization; nothing here trains or loads data.

Structure (n = ``resnet_size``, f = ``first_num_filters``):

* v1, He et al. 2015 ("Deep Residual Learning"): 3x3 conv 3->f, BN-ReLU, three stacks of n
  ``StandardBlock`` with f, 2f, 4f filters, global average pool, fully connected layer.
  Depth 6n+2.
* v2, He et al. 2016 ("Identity Mappings"): 3x3 conv 3->f, three stacks of n pre-activation
  ``BottleneckBlock`` with 4f, 8f, 16f outputs, a final BN-ReLU, pool, fully connected layer.
  Depth 9n+2.

Four details differ between the code that produced the two tables this project reproduces,
and are settings here, not forks of the network:

* which convolution of a downsampling bottleneck strides (``bottleneck_stride``): the 3x3, as
  TensorFlow's official ResNet (which the seed's skeleton follows), or the first 1x1, as He et
  al.'s released ``resnet-pre-act.lua`` (KaimingHe/resnet-1k-layers);
* whether v2's projection shortcut has a BN after its 1x1 convolution
  (``v2_projection_bn``): the seed's Fig. 7 has one, ``resnet-pre-act.lua`` none;
* the momentum of the BN-ReLU after v1's first convolution and before v2's pooling
  (``start_output_bn_momentum``): the seed's ``batch_norm_relu_layer`` (Fig. 4, momentum 0.997)
  was used there only; its blocks and shortcuts built ``nn.BatchNorm2d`` with PyTorch's
  default (Figs. 5-7);
* the initialization (``init``): ``pytorch``, the defaults of ``nn.Conv2d`` and ``nn.Linear``
  (uniform, bound 1/sqrt(fan_in)), which the seed's code ran, since neither its figures nor its
  skeleton initialize a weight; or ``he``, as the authors' released code
  (fb.resnet.torch ``models/resnet.lua``, on which resnet-1k-layers is built): convolutions
  normal with std sqrt(2/fan_out) (its ``ConvInit``), the fully connected bias zero.

The first block of stacks 2 and 3 halves the spatial size (stride 2). Where a block changes
the shape, v1's shortcut is one of He et al. 2015's options: ``A``, the identity subsampled
with stride 2 and zero-padded to the new channel count (parameter-free; what the paper used on
CIFAR-10), or ``B``, a 1x1 convolution + BN (the seed's choice). v2's is a 1x1 convolution
applied to the pre-activated input, as in He et al. 2016. Parameter counts this module
reproduces (10 classes, f = 16), checked by ``tests/unit/test_net.py``:

========  ==============  ======  ==========  ==========
version   resnet_size n   depth   option A    option B
========  ==============  ======  ==========  ==========
1         3               20      269,722     272,474
1         5               32      464,154
1         7               44      658,586
1         9               56      853,018
1         18              110     1,727,962   1,730,714
2         18              164                 1,703,258
========  ==============  ======  ==========  ==========

(v2 with ``v2_projection_bn``: 896 more, 1,704,154 for n = 18.) How many images a BN's training
statistics cover is the training loop's business (``bn_group_images`` in train.py), not the
network's.

The seed report's code (its Figs. 2-7) named these parts ``start_layer``,
``batch_norm_relu_layer``, ``standard_block``, ``bottleneck_block``, ``stack_layer`` and
``output_layer``; the classes below say which each corresponds to. Its bugs are not
reproduced: convolutions carry no bias (a BN follows each), and the BN momentum follows
PyTorch's convention. The seed passed TensorFlow's decay 0.997 as PyTorch's momentum; the
``seed`` training recipe passes ``start_output_bn_momentum=0.997`` explicitly to reproduce that.

Run ``python -m resnet_repro.net`` for a table of depth and parameter counts.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

VERSIONS = (1, 2)
SHORTCUTS = ("A", "B")
BOTTLENECK_STRIDES = ("3x3", "1x1")
INITS = ("he", "pytorch")
IMAGE_SHAPE = (3, 32, 32)


def resnet_depth(version: int, resnet_size: int) -> int:
    """The papers' depth (weighted layers on the main path) of ``resnet_size`` blocks per
    stack: 6n+2 for v1's two-convolution blocks, 9n+2 for v2's three-convolution bottlenecks."""
    return (6 if version == 1 else 9) * resnet_size + 2


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def batch_norm(num_features: int, *, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(num_features, momentum=momentum)


class BatchNormReLU(nn.Module):
    """Batch normalization then ReLU (seed: ``batch_norm_relu_layer``)."""

    def __init__(self, num_features: int, *, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = batch_norm(num_features, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(x))


class PaddedIdentity(nn.Module):
    """He et al. 2015's option-A shortcut: the input subsampled with ``stride`` and its extra
    channels filled with zeros (appended after the input's). No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"PaddedIdentity: cannot shrink {in_channels} channels to {out_channels}"
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class StandardBlock(nn.Module):
    """Post-activation basic block of ResNet v1 (seed: ``standard_block``).

    conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, ReLU. The shortcut is the identity, or,
    where the block changes the number of channels or the resolution, option ``A`` (strided
    identity, zero-padded channels) or ``B`` (1x1 convolution + BN).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        bn_momentum: float = 0.1,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"StandardBlock: shortcut must be A or B, got {shortcut!r}")
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn_relu1 = BatchNormReLU(out_channels, bn_momentum=bn_momentum)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = batch_norm(out_channels, momentum=bn_momentum)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = PaddedIdentity(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(
                    conv1x1(in_channels, out_channels, stride),
                    batch_norm(out_channels, momentum=bn_momentum),
                )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.bn_relu1(self.conv1(x))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck block of ResNet v2 (seed: ``bottleneck_block``).

    BN-ReLU-conv1x1 (to out/4), BN-ReLU-conv3x3, BN-ReLU-conv1x1 (to out), add the shortcut.
    A downsampling block strides its 3x3 (``stride_on="3x3"``) or its first 1x1 (``"1x1"``).
    Where the shape changes, the shortcut is a 1x1 convolution (then a BN when
    ``projection_bn``) applied to the pre-activated input, so that both paths start from the
    same normalized tensor.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        bn_momentum: float = 0.1,
        shortcut: str = "B",
        stride_on: str = "3x3",
        projection_bn: bool = False,
    ) -> None:
        super().__init__()
        if stride_on not in BOTTLENECK_STRIDES:
            raise ValueError(f"BottleneckBlock: stride_on must be 3x3 or 1x1, got {stride_on!r}")
        if shortcut != "B":
            raise ValueError(
                "BottleneckBlock: shortcut must be B: a pre-activation block projects the "
                f"pre-activated input where it changes shape (He et al. 2016), got {shortcut!r}"
            )
        if out_channels % self.expansion:
            raise ValueError(
                f"BottleneckBlock: out_channels must be a multiple of {self.expansion}, "
                f"got {out_channels}"
            )
        width = out_channels // self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.bn_relu1 = BatchNormReLU(in_channels, bn_momentum=bn_momentum)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn_relu2 = BatchNormReLU(width, bn_momentum=bn_momentum)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn_relu3 = BatchNormReLU(width, bn_momentum=bn_momentum)
        self.conv3 = conv1x1(width, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            projection = conv1x1(in_channels, out_channels, stride)
            self.shortcut = (
                nn.Sequential(projection, batch_norm(out_channels, momentum=bn_momentum))
                if projection_bn
                else projection
            )

    def forward(self, x: Tensor) -> Tensor:
        preact = self.bn_relu1(x)
        identity = x if self.shortcut is None else self.shortcut(preact)
        out = self.conv1(preact)
        out = self.conv2(self.bn_relu2(out))
        out = self.conv3(self.bn_relu3(out))
        out += identity
        return out


class StackLayer(nn.Sequential):
    """``num_blocks`` blocks of one kind; the first may change channels and stride
    (seed: ``stack_layer``)."""

    def __init__(
        self,
        block: type[StandardBlock] | type[BottleneckBlock],
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        *,
        stride: int,
        **options: Any,
    ) -> None:
        """``options``: the block's keyword settings (bn_momentum, shortcut, ...)."""
        blocks = [block(in_channels, out_channels, stride=stride, **options)]
        blocks += [
            block(out_channels, out_channels, stride=1, **options) for _ in range(num_blocks - 1)
        ]
        super().__init__(*blocks)


class OutputLayer(nn.Module):
    """Optional final BN-ReLU (v2 only), global average pool, fully connected layer
    (seed: ``output_layer``)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        pre_activation: bool,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.bn_relu = (
            BatchNormReLU(in_channels, bn_momentum=bn_momentum) if pre_activation else None
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.bn_relu is not None:
            x = self.bn_relu(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNet(nn.Module):
    """ResNet v1 or v2 for 32x32 RGB images; see the module docstring for the layout.

    Args:
        version: 1 (standard post-activation blocks) or 2 (pre-activation bottlenecks).
        resnet_size: blocks per stack, n >= 1 (depth 6n+2 for v1, 9n+2 for v2).
        num_classes: outputs of the final fully connected layer.
        first_num_filters: channels after the start convolution (16 in the papers).
        bn_momentum: PyTorch's BN momentum (weight of the newest batch in running stats) of
            every BN in the blocks and their shortcuts.
        start_output_bn_momentum: the same for the BN-ReLU after v1's first convolution and
            before v2's pooling (None: ``bn_momentum``).
        shortcut: v1's shortcut where a block changes shape, ``"A"`` (zero-padded identity)
            or ``"B"`` (1x1 convolution + BN); v2 takes ``"B"`` only.
        bottleneck_stride: which convolution of a downsampling v2 block strides, ``"3x3"`` or
            ``"1x1"`` (the first).
        v2_projection_bn: a BN after the 1x1 convolution of v2's projection shortcuts.
        init: ``"he"`` or ``"pytorch"`` (see ``reset_parameters``).
        generator: source of every random draw of the initialization. ``None`` uses a fresh
            generator seeded with 0, so building a network is deterministic and never reads
            or advances the global RNG.
    """

    def __init__(
        self,
        version: int,
        resnet_size: int,
        num_classes: int = 10,
        first_num_filters: int = 16,
        bn_momentum: float = 0.1,
        *,
        start_output_bn_momentum: float | None = None,
        shortcut: str = "B",
        bottleneck_stride: str = "3x3",
        v2_projection_bn: bool = False,
        init: str = "he",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"ResNet: version must be 1 or 2, got {version!r}")
        for name, value in (
            ("resnet_size", resnet_size),
            ("num_classes", num_classes),
            ("first_num_filters", first_num_filters),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ResNet: {name} must be an integer >= 1, got {value!r}")
        if start_output_bn_momentum is None:
            start_output_bn_momentum = bn_momentum
        for name, value in (
            ("bn_momentum", bn_momentum),
            ("start_output_bn_momentum", start_output_bn_momentum),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ResNet: {name} must be in [0, 1], got {value!r}")
        if bottleneck_stride not in BOTTLENECK_STRIDES:
            raise ValueError(
                f"ResNet: bottleneck_stride must be 3x3 or 1x1, got {bottleneck_stride!r}"
            )
        if init not in INITS:
            raise ValueError(f"ResNet: init must be he or pytorch, got {init!r}")
        if shortcut not in SHORTCUTS or (version == 2 and shortcut != "B"):
            raise ValueError(
                f"ResNet: shortcut must be A or B for v1 and B for v2, got {shortcut!r}"
            )
        self.version = version
        self.resnet_size = resnet_size
        edge_bn = {"bn_momentum": start_output_bn_momentum}
        block_options: dict[str, Any] = {"bn_momentum": bn_momentum, "shortcut": shortcut}

        # PyTorch's layer constructors draw a default init from the global RNG; we overwrite it
        # below from `generator`, and fork the global RNG so that building leaves it untouched.
        with torch.random.fork_rng(devices=[]):
            self.start_layer = conv3x3(3, first_num_filters)
            if version == 1:
                block, widths = StandardBlock, [first_num_filters * 2**i for i in range(3)]
                self.start_bn_relu = BatchNormReLU(first_num_filters, **edge_bn)
            else:
                block = BottleneckBlock
                widths = [BottleneckBlock.expansion * first_num_filters * 2**i for i in range(3)]
                block_options.update(stride_on=bottleneck_stride, projection_bn=v2_projection_bn)
                self.start_bn_relu = None
            in_channels = first_num_filters
            stacks = []
            for i, width in enumerate(widths):
                stride = 1 if i == 0 else 2
                stacks.append(
                    StackLayer(
                        block, in_channels, width, resnet_size, stride=stride, **block_options
                    )
                )
                in_channels = width
            self.stacks = nn.Sequential(*stacks)
            self.output_layer = OutputLayer(
                in_channels, num_classes, pre_activation=version == 2, **edge_bn
            )
        self.reset_parameters(init, generator)

    def reset_parameters(self, init: str = "he", generator: torch.Generator | None = None) -> None:
        """Every weight drawn from ``generator``, in module order. BN weight 1, bias 0. The
        fully connected weight uniform in +-1/sqrt(fan_in) (PyTorch's and Torch7's default).
        Convolutions: ``"he"``, normal with std sqrt(2/fan_out) (fb.resnet.torch's ConvInit),
        and the fully connected bias 0 (its ``v.bias:zero()``); ``"pytorch"``, PyTorch's own
        ``kaiming_uniform_(a=sqrt(5))``, bound 1/sqrt(fan_in), and a uniform bias."""
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and init == "he":
                nn.init.kaiming_normal_(
                    module.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                if init == "he":
                    nn.init.zeros_(module.bias)
                else:
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    @property
    def depth(self) -> int:
        """The papers' depth (see ``resnet_depth``)."""
        return resnet_depth(self.version, self.resnet_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(
                f"ResNet.forward: expected a float tensor [N, 3, 32, 32], got shape {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"ResNet.forward: expected a float tensor, got dtype {x.dtype}")
        out = self.start_layer(x)
        if self.start_bn_relu is not None:
            out = self.start_bn_relu(out)
        out = self.stacks(out)
        return self.output_layer(out)


def weighted_layers(model: nn.Module) -> int:
    """Convolutions on the main path plus fully connected layers (shortcuts excluded): the
    'depth' the papers quote."""
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            count += 1
        elif isinstance(module, nn.Conv2d) and "shortcut" not in name:
            count += 1
    return count


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    sizes = [(1, 3), (1, 5), (1, 7), (1, 9), (1, 8), (1, 16), (1, 18), (2, 8), (2, 16), (2, 18)]
    print(f"{'version':>7} {'n':>3} {'depth':>6} {'layers':>6} {'params A':>11} {'params B':>11}")
    for version, size in sizes:
        net = ResNet(version, size)
        option_a = count_parameters(ResNet(version, size, shortcut="A")) if version == 1 else None
        a = f"{option_a:>11,}" if option_a is not None else f"{'-':>11}"
        print(
            f"{version:>7} {size:>3} {net.depth:>6} {weighted_layers(net):>6} {a} "
            f"{count_parameters(net):>11,}"
        )
