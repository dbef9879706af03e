"""Unit tests of resnet_repro.net: shapes, counts against the papers, layout, init, errors."""

import math

import pytest
import torch
from torch import nn

from resnet_repro.net import (
    BatchNormReLU,
    BottleneckBlock,
    OutputLayer,
    PaddedIdentity,
    ResNet,
    StackLayer,
    StandardBlock,
    batch_norm,
    count_parameters,
    resnet_depth,
    weighted_layers,
)


@pytest.mark.parametrize(
    ("version", "size", "params"),
    [(1, 3, 272_474), (1, 18, 1_730_714), (2, 18, 1_703_258)],
)
def test_option_b_parameter_counts(version, size, params):
    """Projection shortcuts (option B, the seed's and the default): ../shared/REFERENCES.md
    gives 272,474 (ResNet-20) and 1,730,714 (ResNet-110); He et al.'s own CIFAR nets used
    option A (test_option_a_parameter_counts_match_he_et_al)."""
    assert count_parameters(ResNet(version, size)) == params


@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("version", [1, 2])
def test_weighted_layer_count_is_paper_depth(version, size):
    depth = 6 * size + 2 if version == 1 else 9 * size + 2
    assert weighted_layers(ResNet(version, size)) == depth


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("version", [1, 2])
def test_logits_shape(version, num_classes):
    net = ResNet(version, 1, num_classes=num_classes)
    assert net(torch.zeros(5, 3, 32, 32)).shape == (5, num_classes)


def test_first_num_filters_sets_widths():
    v1 = ResNet(1, 1, first_num_filters=8)
    assert [s[0].conv2.out_channels for s in v1.stacks] == [8, 16, 32]
    v2 = ResNet(2, 1, first_num_filters=8)
    assert [s[0].conv3.out_channels for s in v2.stacks] == [32, 64, 128]


def strides(stack):
    return [b.conv1.stride[0] if isinstance(b, StandardBlock) else b.conv2.stride[0] for b in stack]


@pytest.mark.parametrize("version", [1, 2])
def test_stride_two_only_in_first_block_of_stacks_2_and_3(version):
    net = ResNet(version, 3)
    assert [strides(s) for s in net.stacks] == [[1, 1, 1], [2, 1, 1], [2, 1, 1]]


def test_v1_projections_only_where_shape_changes():
    net = ResNet(1, 3)
    has_proj = [[b.shortcut is not None for b in s] for s in net.stacks]
    assert has_proj == [[False] * 3, [True, False, False], [True, False, False]]
    proj = net.stacks[1][0].shortcut
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1)
    assert proj[0].stride == (2, 2) and isinstance(proj[1], nn.BatchNorm2d)


def test_v2_projection_in_every_first_block_on_preactivated_input():
    net = ResNet(2, 2)
    has_proj = [[b.shortcut is not None for b in s] for s in net.stacks]
    # Stack 1 widens 16 -> 64, so its first block needs a projection too.
    assert has_proj == [[True, False]] * 3
    block = net.stacks[0][0]
    x = torch.randn(2, 16, 32, 32)
    block.eval()
    preact = block.bn_relu1(x)
    main = block.conv3(block.bn_relu3(block.conv2(block.bn_relu2(block.conv1(preact)))))
    torch.testing.assert_close(block(x), main + block.shortcut(preact))


def test_v2_has_final_bn_relu_and_v1_does_not():
    assert isinstance(ResNet(2, 1).output_layer.bn_relu, BatchNormReLU)
    assert ResNet(1, 1).output_layer.bn_relu is None
    assert isinstance(ResNet(1, 1).start_bn_relu, BatchNormReLU)
    assert ResNet(2, 1).start_bn_relu is None


@pytest.mark.parametrize("version", [1, 2])
def test_convolutions_have_no_bias_fc_has_one(version):
    net = ResNet(version, 2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)
    assert net.output_layer.fc.bias is not None


@pytest.mark.parametrize("momentum", [0.1, 0.997])
def test_bn_momentum_uses_pytorch_convention(momentum):
    net = ResNet(1, 1, bn_momentum=momentum)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(b.momentum == momentum for b in bns)
    bn = net.start_bn_relu.bn
    x = torch.randn(64, 16, 4, 4) * 3 + 2
    bn.train()
    bn(x)
    batch_mean = x.mean(dim=(0, 2, 3))
    # PyTorch: running = (1 - momentum) * running + momentum * batch, running starts at 0.
    torch.testing.assert_close(bn.running_mean, momentum * batch_mean)


def test_he_init_statistics():
    net = ResNet(1, 18)
    weights = torch.cat(
        [
            m.weight.flatten()
            for m in net.modules()
            if isinstance(m, nn.Conv2d) and m.out_channels == 64 and m.kernel_size == (3, 3)
        ]
    )
    expected_std = (2.0 / (64 * 9)) ** 0.5  # fan_out = out_channels * kernel area
    assert abs(weights.mean().item()) < 0.05 * expected_std
    assert weights.std().item() == pytest.approx(expected_std, rel=0.02)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    fc = net.output_layer.fc
    assert fc.weight.abs().max() <= 1 / 64**0.5


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = ResNet(2, 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = ResNet(2, 1, generator=torch.Generator().manual_seed(3))
    c = ResNet(2, 1, generator=torch.Generator().manual_seed(4))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.start_layer.weight, c.start_layer.weight)
    assert torch.equal(ResNet(1, 1).start_layer.weight, ResNet(1, 1).start_layer.weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": 3, "resnet_size": 1}, "version must be 1 or 2, got 3"),
        ({"version": 1, "resnet_size": 0}, "resnet_size must be an integer >= 1, got 0"),
        ({"version": 2, "resnet_size": 1.5}, "resnet_size must be an integer >= 1, got 1.5"),
        ({"version": 1, "resnet_size": 1, "num_classes": 0}, "num_classes must be"),
        ({"version": 1, "resnet_size": 1, "bn_momentum": 1.5}, "bn_momentum must be in"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(2, 3, 28, 28), r"\[N, 3, 32, 32\], got shape \[2, 3, 28, 28\]"),
        (torch.zeros(3, 32, 32), r"got shape \[3, 32, 32\]"),
        (torch.zeros(2, 1, 32, 32), r"got shape \[2, 1, 32, 32\]"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "got dtype torch.uint8"),
    ],
)
def test_bad_input_raises_value_error(x, message):
    with pytest.raises(ValueError, match=message):
        ResNet(1, 1)(x)


def test_building_blocks_shapes():
    assert StandardBlock(16, 32, stride=2)(torch.zeros(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert BottleneckBlock(64, 128, stride=2)(torch.zeros(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    stack = StackLayer(StandardBlock, 16, 16, 3, stride=1)
    assert len(stack) == 3 and stack(torch.zeros(2, 16, 8, 8)).shape == (2, 16, 8, 8)
    out = OutputLayer(64, 10, pre_activation=True)
    assert out(torch.zeros(2, 64, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="multiple of 4"):
        BottleneckBlock(16, 30)


def test_self_check_prints_table():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "resnet_repro.net"], capture_output=True, text=True, check=True
    ).stdout
    assert "1,730,714" in out and "1,703,258" in out


@pytest.mark.parametrize(
    ("size", "params"),
    [(3, 269_722), (5, 464_154), (7, 658_586), (9, 853_018), (18, 1_727_962)],
)
def test_option_a_parameter_counts_match_he_et_al(size, params):
    net = ResNet(1, size, shortcut="A")
    assert count_parameters(net) == params and net.depth == 6 * size + 2


def test_option_a_shortcut_is_strided_identity_with_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    out = PaddedIdentity(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()
    block = StandardBlock(16, 32, stride=2, shortcut="A")
    assert isinstance(block.shortcut, PaddedIdentity)
    assert (
        count_parameters(block) == count_parameters(StandardBlock(16, 32, stride=2)) - 16 * 32 - 64
    )


def test_v2_refuses_option_a():
    with pytest.raises(ValueError, match="B for v2"):
        ResNet(2, 1, shortcut="A")


def test_start_output_bn_momentum_reaches_only_the_bn_relu_outside_the_blocks():
    """The seed's batch_norm_relu_layer (momentum 0.997, its Fig. 4) sat after v1's first
    convolution and before v2's pooling; every other BN had PyTorch's 0.1 (Figs. 5-7)."""
    for version, edge in ((1, "start_bn_relu.bn"), (2, "output_layer.bn_relu.bn")):
        net = ResNet(version, 2, bn_momentum=0.1, start_output_bn_momentum=0.997)
        momenta = {n: m.momentum for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
        assert momenta.pop(edge) == 0.997
        assert momenta and set(momenta.values()) == {0.1}
    assert ResNet(1, 1, bn_momentum=0.3).start_bn_relu.bn.momentum == 0.3  # None: bn_momentum
    with pytest.raises(ValueError, match=r"^ResNet: start_output_bn_momentum must be in \[0, 1\]"):
        ResNet(1, 1, start_output_bn_momentum=1.5)


def test_v2_projection_bn_adds_a_bn_after_each_projection():
    """The seed's Fig. 7: Conv2d then BatchNorm2d; He et al.'s resnet-pre-act.lua: the bare
    convolution. Three projections (16->64, 64->128, 128->256) add 2 x 448 parameters."""
    bare, with_bn = ResNet(2, 18), ResNet(2, 18, v2_projection_bn=True, bn_momentum=0.3)
    assert count_parameters(with_bn) - count_parameters(bare) == 896
    shortcuts = [m.shortcut for m in with_bn.modules() if isinstance(m, BottleneckBlock)]
    projections = [m for m in shortcuts if m is not None]
    assert len(projections) == 3
    for m in projections:
        assert isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d)
        assert m[1].momentum == 0.3
    assert all(
        isinstance(m, nn.Conv2d)
        for m in (b.shortcut for b in bare.modules() if isinstance(b, BottleneckBlock))
        if m is not None
    )
    assert with_bn(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("stride_on", "strides"), [("3x3", (1, 2)), ("1x1", (2, 1))])
def test_bottleneck_stride_picks_the_convolution_that_downsamples(stride_on, strides):
    """TensorFlow's official model (the seed's skeleton) strides the 3x3; He et al.'s released
    code strides the first 1x1. Either way the block halves the resolution."""
    net = ResNet(2, 2, bottleneck_stride=stride_on)
    first_of_stack_2 = net.stacks[1][0]
    assert (first_of_stack_2.conv1.stride[0], first_of_stack_2.conv2.stride[0]) == strides
    assert all(m.stride == (1, 1) for m in net.stacks[1][1].modules() if isinstance(m, nn.Conv2d))
    block = BottleneckBlock(64, 128, stride=2, stride_on=stride_on)
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    with pytest.raises(ValueError, match=r"^ResNet: bottleneck_stride must be 3x3 or 1x1"):
        ResNet(2, 1, bottleneck_stride="2x2")
    with pytest.raises(ValueError, match=r"^BottleneckBlock: stride_on must be 3x3 or 1x1"):
        BottleneckBlock(64, 128, stride=2, stride_on="3")


def test_bottleneck_stride_changes_the_function_not_the_parameters():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    a = ResNet(2, 1, bottleneck_stride="3x3").eval()
    b = ResNet(2, 1, bottleneck_stride="1x1").eval()
    b.load_state_dict(a.state_dict())
    assert (a(x) - b(x)).abs().max() > 1e-4


def test_standard_block_adds_the_shortcut_before_the_last_relu():
    gen = torch.Generator().manual_seed(0)
    block = StandardBlock(8, 8).eval()
    with torch.no_grad():
        for bn in (block.bn_relu1.bn, block.bn2):
            bn.running_mean.normal_(generator=gen)
            bn.running_var.uniform_(0.5, 2, generator=gen)
    x = torch.randn(2, 8, 6, 6, generator=gen)
    main = block.bn2(block.conv2(block.bn_relu1(block.conv1(x))))
    torch.testing.assert_close(block(x), torch.relu(main + x))


def test_depth_of_both_versions():
    assert [resnet_depth(1, n) for n in (3, 18)] == [20, 110]
    assert [resnet_depth(2, n) for n in (8, 18)] == [74, 164] == [ResNet(2, 8).depth, 164]


def test_he_init_uses_fan_out_and_the_fc_layer_draws_both_signs():
    conv = ResNet(1, 1, first_num_filters=64).start_layer  # 3 -> 64 channels, 3x3
    fan_out = 64 * 9
    assert abs(conv.weight.std().item() / math.sqrt(2 / fan_out) - 1) < 0.15
    fc = ResNet(1, 1, num_classes=1000).output_layer.fc
    bound = 1 / math.sqrt(fc.in_features)
    assert fc.weight.abs().max() <= bound
    assert fc.weight.min() < -bound / 2 < bound / 2 < fc.weight.max()
    assert torch.all(fc.bias == 0)  # fb.resnet.torch: v.bias:zero()
    assert torch.equal(ResNet(1, 1).start_layer.weight, ResNet(1, 1).start_layer.weight)


@pytest.mark.parametrize("version", [1, 2])
def test_the_seed_recipes_init_is_pytorchs_own(version):
    """The seed's code initialized nothing: each layer of the seed recipe's network has the
    statistics of a plain nn.Conv2d / nn.Linear of its shape (std 1/sqrt(3 fan_in), bound
    1/sqrt(fan_in)), which He's init does not (2.45x for a 16 -> 16 3x3 convolution)."""
    from resnet_repro.config import make_config
    from resnet_repro.runtime import build_model

    config = make_config("seed", version=version, resnet_size=18)
    net = build_model(config, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            plain = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, bias=False)
        elif isinstance(m, nn.Linear):
            plain = nn.Linear(m.in_features, m.out_features)
        else:
            continue
        fan_in = plain.weight[0].numel()
        for ours, theirs in [(m.weight, plain.weight), (m.bias, plain.bias)]:
            if theirs is None:
                assert ours is None
                continue
            assert ours.abs().max() <= 1 / math.sqrt(fan_in), name
            if ours.numel() >= 400:  # enough values for a 10% estimate of the spread
                assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.1), name
                assert ours.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)


def test_every_bn_gets_the_momentum_and_defaults_are_the_papers():
    for version in (1, 2):
        bns = [
            m
            for m in ResNet(version, 1, bn_momentum=0.3).modules()
            if isinstance(m, nn.BatchNorm2d)
        ]
        assert bns and {m.momentum for m in bns} == {0.3}
    plain = ResNet(1, 1)
    assert all(type(m) is nn.BatchNorm2d for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    assert StandardBlock(16, 16)(torch.zeros(1, 16, 8, 8)).shape == (1, 16, 8, 8)
    assert BottleneckBlock(64, 64)(torch.zeros(1, 64, 8, 8)).shape == (1, 64, 8, 8)
    assert StandardBlock(16, 16).bn2.momentum == 0.1 and BatchNormReLU(4).bn.momentum == 0.1
    stack = StackLayer(StandardBlock, 16, 32, 2, stride=2)
    assert all(
        type(m) is nn.BatchNorm2d and m.momentum == 0.1
        for m in stack.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    assert OutputLayer(16, 10, pre_activation=True).bn_relu.bn.momentum == 0.1
    assert PaddedIdentity(16, 16, 2)(torch.ones(1, 16, 4, 4)).shape == (1, 16, 2, 2)


def test_shortcut_errors_name_the_rule():
    with pytest.raises(ValueError, match=r"^StandardBlock: shortcut must be A or B, got 'C'$"):
        StandardBlock(16, 32, stride=2, shortcut="C")
    with pytest.raises(ValueError, match=r"^BottleneckBlock: shortcut must be B: a pre-activation"):
        BottleneckBlock(64, 128, stride=2, shortcut="A")
    with pytest.raises(ValueError, match=r"^ResNet: shortcut must be A or B for v1 and B for v2"):
        ResNet(2, 1, shortcut="A")
    with pytest.raises(ValueError, match=r"^PaddedIdentity: cannot shrink 32 channels to 16$"):
        PaddedIdentity(32, 16, 1)


def test_options_reach_every_block_of_deeper_stacks():
    for version in (1, 2):
        net = ResNet(version, 2, bn_momentum=0.3, start_output_bn_momentum=0.3)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(type(m) is nn.BatchNorm2d and m.momentum == 0.3 for m in bns)
    option_a = ResNet(1, 2, shortcut="A")
    assert sum(isinstance(m, PaddedIdentity) for m in option_a.modules()) == 2
    assert option_a(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    block = StandardBlock(16, 32, stride=2, shortcut="A")
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)


def test_defaults_and_boundaries_of_the_constructors():
    assert type(OutputLayer(16, 10, pre_activation=True).bn_relu.bn) is nn.BatchNorm2d
    assert BottleneckBlock(64, 64).bn_relu1.bn.momentum == 0.1
    ResNet(1, 1, bn_momentum=0.0)
    ResNet(1, 1, bn_momentum=1.0)
    seeded = ResNet(1, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ResNet(1, 1).start_layer.weight, seeded.start_layer.weight)


def test_bn_helpers_default_to_plain_batch_norm():
    assert type(batch_norm(4, momentum=0.1)) is nn.BatchNorm2d
    assert type(BatchNormReLU(4).bn) is nn.BatchNorm2d


def test_pytorchs_init_draws_from_the_runs_generator_too():
    a = ResNet(1, 1, init="pytorch", generator=torch.Generator().manual_seed(3))
    b = ResNet(1, 1, init="pytorch", generator=torch.Generator().manual_seed(4))
    again = ResNet(1, 1, init="pytorch", generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a.start_layer.weight, b.start_layer.weight)
    assert not torch.equal(a.output_layer.fc.bias, b.output_layer.fc.bias)
    assert torch.equal(a.output_layer.fc.bias, again.output_layer.fc.bias)
    assert torch.equal(a.start_layer.weight, again.start_layer.weight)
    assert (
        a.output_layer.fc.bias.min() < 0 < a.output_layer.fc.bias.max()
    )  # drawn from [-bound, bound]


def test_reset_parameters_defaults_to_he_and_names_a_bad_init():
    net = ResNet(1, 1, init="pytorch")
    net.reset_parameters(generator=torch.Generator().manual_seed(0))
    assert torch.equal(net.output_layer.fc.bias, torch.zeros(10))  # He et al.'s zero fc bias
    with pytest.raises(ValueError) as e:
        ResNet(1, 1, init="xavier")
    assert str(e.value) == "ResNet: init must be he or pytorch, got 'xavier'"
    with pytest.raises(ValueError) as e:
        ResNet(1, 1, first_num_filters=0)
    assert str(e.value) == "ResNet: first_num_filters must be an integer >= 1, got 0"
