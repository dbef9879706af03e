"""Properties of the networks for arbitrary batches (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_repro.net import BottleneckBlock, ResNet, StandardBlock

NETS = {v: ResNet(v, 1, generator=torch.Generator().manual_seed(v)).eval() for v in (1, 2)}


def batch(n, seed):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=10)
@given(st.sampled_from([1, 2]), st.integers(1, 6), st.integers(0, 1000))
def test_eval_is_batch_independent(version, n, seed):
    net, x = NETS[version], batch(n, seed)
    with torch.no_grad():
        full = net(x)
        for i in range(n):
            torch.testing.assert_close(full[i : i + 1], net(x[i : i + 1]), rtol=1e-4, atol=1e-5)


@settings(max_examples=10)
@given(st.sampled_from([1, 2]), st.permutations(range(5)), st.integers(0, 1000))
def test_eval_is_permutation_equivariant(version, perm, seed):
    net, x = NETS[version], batch(5, seed)
    perm = torch.tensor(perm)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[perm], net(x[perm]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("block", [StandardBlock, BottleneckBlock])
@given(
    n=st.integers(1, 4),
    size=st.sampled_from([2, 4, 8, 16]),
    stride=st.sampled_from([1, 2]),
    widen=st.booleans(),
    training=st.booleans(),
)
def test_blocks_keep_or_halve_spatial_size(block, n, size, stride, widen, training):
    in_channels = 16
    out_channels = 32 if widen else 16
    module = block(in_channels, out_channels, stride=stride).train(training)
    if training and n * size * size // stride**2 == 1:
        return  # BN cannot take batch statistics of a single value per channel
    out = module(torch.randn(n, in_channels, size, size))
    assert out.shape == (n, out_channels, size // stride, size // stride)
