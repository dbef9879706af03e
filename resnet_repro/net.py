"""ResNet v1 (post-activation standard blocks) and v2 (pre-activation bottlenecks) for CIFAR.

This module owns the network architecture and its initialization; nothing here trains or loads data.

Structure (n = ``resnet_size``, f = ``first_num_filters``):

* v1, He et al. 2015 ("Deep Residual Learning"): 3x3 conv 3->f, BN-ReLU, three stacks of n
  ``StandardBlock`` with f, 2f, 4f filters, global average pool, fully connected layer.
  Depth 6n+2.
* v2, He et al. 2016 ("Identity Mappings"): 3x3 conv 3->f, three stacks of n pre-activation
  ``BottleneckBlock`` with 4f, 8f, 16f outputs, a final BN-ReLU, pool, fully connected layer.
  Depth 9n+2.

The first block of stacks 2 and 3 halves the spatial size (stride 2). Where a block changes
the shape, its shortcut is a 1x1 convolution (plus BN in v1; in v2 it is applied to the
pre-activated input, as in He et al. 2016). Parameter counts this module reproduces
(10 classes, f = 16), checked by ``tests/unit/test_net.py``:

========  ==============  ======  ==========
version   resnet_size n   depth   parameters
========  ==============  ======  ==========
1         3               20      272,474
1         18              110     1,730,714
2         18              164     1,703,258
========  ==============  ======  ==========

The seed report's code (its Figs. 2-7) named these parts ``start_layer``,
``batch_norm_relu_layer``, ``standard_block``, ``bottleneck_block``, ``stack_layer`` and
``output_layer``; the classes below say which each corresponds to. Its bugs are not
reproduced: convolutions carry no bias (a BN follows each), and the BN momentum follows
PyTorch's convention. The seed passed TensorFlow's decay 0.997 as PyTorch's momentum; the
``seed`` training recipe passes ``bn_momentum=0.997`` explicitly to reproduce that.

Run ``python -m resnet_repro.net`` for a table of depth and parameter counts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

VERSIONS = (1, 2)
IMAGE_SHAPE = (3, 32, 32)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BatchNormReLU(nn.Module):
    """Batch normalization then ReLU (seed: ``batch_norm_relu_layer``)."""

    def __init__(self, num_features: int, *, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(x))


class StandardBlock(nn.Module):
    """Post-activation basic block of ResNet v1 (seed: ``standard_block``).

    conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, ReLU. The shortcut is the identity, or a
    1x1 convolution + BN where the block changes the number of channels or the resolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn_relu1 = BatchNormReLU(out_channels, bn_momentum=bn_momentum)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.projection_shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection_shortcut = nn.Sequential(
                conv1x1(in_channels, out_channels, stride),
                nn.BatchNorm2d(out_channels, momentum=bn_momentum),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.projection_shortcut is None else self.projection_shortcut(x)
        out = self.bn_relu1(self.conv1(x))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck block of ResNet v2 (seed: ``bottleneck_block``).

    BN-ReLU-conv1x1 (to out/4), BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 (to out), add the
    shortcut. Where the shape changes, the shortcut is a 1x1 convolution applied to the
    pre-activated input, so that both paths start from the same normalized tensor.
    """

    expansion = 4

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        if out_channels % self.expansion:
            raise ValueError(
                f"BottleneckBlock: out_channels must be a multiple of {self.expansion}, "
                f"got {out_channels}"
            )
        width = out_channels // self.expansion
        self.bn_relu1 = BatchNormReLU(in_channels, bn_momentum=bn_momentum)
        self.conv1 = conv1x1(in_channels, width)
        self.bn_relu2 = BatchNormReLU(width, bn_momentum=bn_momentum)
        self.conv2 = conv3x3(width, width, stride)
        self.bn_relu3 = BatchNormReLU(width, bn_momentum=bn_momentum)
        self.conv3 = conv1x1(width, out_channels)
        self.projection_shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection_shortcut = conv1x1(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        preact = self.bn_relu1(x)
        identity = x if self.projection_shortcut is None else self.projection_shortcut(preact)
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
        bn_momentum: float = 0.1,
    ) -> None:
        blocks = [block(in_channels, out_channels, stride=stride, bn_momentum=bn_momentum)]
        blocks += [
            block(out_channels, out_channels, stride=1, bn_momentum=bn_momentum)
            for _ in range(num_blocks - 1)
        ]
        super().__init__(*blocks)


class OutputLayer(nn.Module):
    """Optional final BN-ReLU (v2 only), global average pool, fully connected layer
    (seed: ``output_layer``)."""

    def __init__(
        self, in_channels: int, num_classes: int, *, pre_activation: bool, bn_momentum: float = 0.1
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
        bn_momentum: PyTorch's BN momentum (weight of the newest batch in running stats).
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
        if not 0.0 <= bn_momentum <= 1.0:
            raise ValueError(f"ResNet: bn_momentum must be in [0, 1], got {bn_momentum!r}")
        self.version = version
        self.resnet_size = resnet_size

        # PyTorch's layer constructors draw a default init from the global RNG; we overwrite it
        # below from `generator`, and fork the global RNG so that building leaves it untouched.
        with torch.random.fork_rng(devices=[]):
            self.start_layer = conv3x3(3, first_num_filters)
            if version == 1:
                block, widths = StandardBlock, [first_num_filters * 2**i for i in range(3)]
                self.start_bn_relu = BatchNormReLU(first_num_filters, bn_momentum=bn_momentum)
            else:
                block = BottleneckBlock
                widths = [BottleneckBlock.expansion * first_num_filters * 2**i for i in range(3)]
                self.start_bn_relu = None
            in_channels = first_num_filters
            stacks = []
            for i, width in enumerate(widths):
                stride = 1 if i == 0 else 2
                stacks.append(
                    StackLayer(
                        block,
                        in_channels,
                        width,
                        resnet_size,
                        stride=stride,
                        bn_momentum=bn_momentum,
                    )
                )
                in_channels = width
            self.stacks = nn.Sequential(*stacks)
            self.output_layer = OutputLayer(
                in_channels, num_classes, pre_activation=version == 2, bn_momentum=bn_momentum
            )
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He (fan_out) normal init for convolutions, BN weight 1 / bias 0, and PyTorch's
        default uniform init for the fully connected layer, all drawn from ``generator``."""
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)

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
        elif isinstance(module, nn.Conv2d) and "projection_shortcut" not in name:
            count += 1
    return count


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    sizes = [(1, 3), (1, 5), (1, 7), (1, 9), (1, 8), (1, 16), (1, 18), (2, 8), (2, 16), (2, 18)]
    print(f"{'version':>7} {'n':>3} {'depth':>6} {'layers':>6} {'parameters':>11}")
    for version, size in sizes:
        net = ResNet(version, size)
        depth = 6 * size + 2 if version == 1 else 9 * size + 2
        layers, params = weighted_layers(net), count_parameters(net)
        print(f"{version:>7} {size:>3} {depth:>6} {layers:>6} {params:>11,}")
