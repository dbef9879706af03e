"""Unit tests of resnet_repro.image_utils: known crops, errors, devices, no global RNG."""

import math

import numpy as np
import pytest
import torch
from numpy_reference import crop_flip_image, parse_record, preprocess_image

from resnet_repro.image_utils import (
    NUM_OFFSETS,
    Normalization,
    augment_batch,
    crop_flip,
    draw_crop_flip,
    standardize,
)


def ramp_image():
    return np.arange(32 * 32 * 3, dtype=np.int64).reshape(32, 32, 3).astype(np.float32) + 1


def test_centre_offset_without_flip_is_identity():
    image = ramp_image()
    assert np.array_equal(crop_flip_image(image, (4, 4), False), image)


def test_corner_offset_shifts_and_pads_with_zeros():
    image = ramp_image()
    out = crop_flip_image(image, (0, 8), False)
    assert np.all(out[:4] == 0) and np.all(out[:, 28:] == 0)
    assert np.array_equal(out[4:, :28], image[:28, 4:])


def test_flip_mirrors_columns():
    image = ramp_image()
    assert np.array_equal(crop_flip_image(image, (4, 4), True), image[:, ::-1])


def test_constant_channel_gives_zeros_not_nan():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[..., 1] = 7
    image[0, 0, 2] = 1
    out = preprocess_image(image, False, np.random.default_rng(0))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.all(out[..., :2] == 0)
    assert out[..., 2].std() == pytest.approx(1.0, abs=1e-5)


def test_parse_record_reads_planes_in_rgb_order():
    record = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256])
    out = parse_record(record.astype(np.uint8), False, np.random.default_rng(0))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.all(out[:2] == 0) and out[2].std() == pytest.approx(1.0, abs=1e-5)


def test_eval_mode_draws_nothing():
    rng = np.random.default_rng(5)
    preprocess_image(np.zeros((32, 32, 3), np.uint8), False, rng)
    assert rng.integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)


def batch(n=4):
    return (
        torch.arange(n * 3072, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, 3, 32, 32)
    )


@pytest.mark.parametrize(
    ("offsets", "flips", "message"),
    [
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(3, dtype=torch.bool), "flips must be"),
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.bool), "integer tensor"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.bool), r"\[4, 2\]"),
        (torch.full((4, 2), 9), torch.zeros(4, dtype=torch.bool), "0..8"),
        (torch.full((4, 2), -1), torch.zeros(4, dtype=torch.bool), "0..8"),
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4), "bool tensor"),
    ],
)
def test_crop_flip_bad_parameters(offsets, flips, message):
    with pytest.raises(ValueError, match=message):
        crop_flip(batch(), offsets, flips)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(4, 32, 32, 3), r"\[N, 3, 32, 32\], got shape \[4, 32, 32, 3\]"),
        (torch.zeros(4, 3, 32, 32, dtype=torch.int32), "dtype torch.int32"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN or inf"),
        (np.zeros((1, 3, 32, 32)), "got ndarray"),
    ],
)
def test_batched_bad_input(images, message):
    with pytest.raises(ValueError, match=message):
        standardize(images)
    with pytest.raises(ValueError, match=message):
        augment_batch(images, torch.Generator())


def test_batched_functions_keep_dtype_and_do_not_touch_global_rng():
    state = torch.random.get_rng_state()
    images = batch()
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert standardize(out).dtype == torch.float32
    assert torch.equal(torch.random.get_rng_state(), state)


def test_empty_batch():
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert augment_batch(empty, torch.Generator()).shape == (0, 3, 32, 32)
    assert standardize(empty).shape == (0, 3, 32, 32)


def test_generator_on_other_device_is_refused():
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu, images on meta"):
        augment_batch(images, torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_same_parameters():
    images = batch(16)
    gen = torch.Generator().manual_seed(1)
    offsets = torch.randint(0, 9, (16, 2), generator=gen)
    flips = torch.rand(16, generator=gen) < 0.5
    cpu = standardize(crop_flip(images, offsets, flips))
    cuda = standardize(crop_flip(images.cuda(), offsets.cuda(), flips.cuda()))
    torch.testing.assert_close(cuda.cpu(), cpu)
    # Parameters drawn on the CPU crop a batch on the GPU: they follow the images there.
    moved = crop_flip(images.cuda(), offsets, flips)
    assert moved.device.type == "cuda" and torch.equal(
        moved.cpu(), crop_flip(images, offsets, flips)
    )
    gpu = torch.Generator(device="cuda").manual_seed(1)
    drawn = draw_crop_flip(16, gpu)
    assert drawn[0].device.type == drawn[1].device.type == "cuda"
    mean = Normalization("pixel_mean", torch.zeros(3, 32, 32)).to(torch.device("cuda"))
    assert mean.pixel_mean.device.type == "cuda"


def test_parse_record_augments_in_training_with_the_given_generator():
    record = np.random.default_rng(5).integers(0, 256, 3072).astype(np.uint8)
    image = record.reshape(3, 32, 32).transpose(1, 2, 0)
    out = parse_record(record, True, np.random.default_rng(7))
    expected = preprocess_image(image, True, np.random.default_rng(7)).transpose(2, 0, 1)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, parse_record(record, False, np.random.default_rng(7)))


def test_per_image_and_pixel_mean_differ_and_round_trip():
    rows = np.random.default_rng(0).integers(0, 256, (20, 3072), dtype=np.uint8)
    per_pixel = Normalization.fit("pixel_mean", rows)
    assert Normalization.from_state(per_pixel.state()).pixel_mean.equal(per_pixel.pixel_mean)
    assert Normalization.from_state(None).kind == "per_image"
    images = torch.from_numpy(rows).view(-1, 3, 32, 32)
    assert not torch.allclose(per_pixel(images), Normalization()(images))
    with pytest.raises(ValueError, match="not a normalization record"):
        Normalization.from_state({"kind": "pixel_mean", "pixel_mean": None})


def test_pixel_mean_normalization_centres_each_pixel_of_the_training_set():
    rows = np.random.default_rng(1).integers(0, 256, (50, 3072), dtype=np.uint8)
    normalize = Normalization.fit("pixel_mean", rows)
    expected = rows.astype(np.float64).mean(0).reshape(3, 32, 32) / 255
    np.testing.assert_allclose(normalize.pixel_mean.numpy(), expected, rtol=1e-6)
    images = torch.from_numpy(rows).view(-1, 3, 32, 32)
    out = normalize(images)
    assert out.dtype == torch.float32 and out.double().mean(0).abs().max() < 1e-6
    np.testing.assert_allclose(
        out[0].numpy(), rows[0].reshape(3, 32, 32) / 255 - expected, atol=1e-6
    )
    moved = normalize.to(torch.device("cpu"))
    assert moved.kind == "pixel_mean" and moved.pixel_mean is not None
    assert Normalization.from_state(normalize.state()).kind == "pixel_mean"
    assert Normalization().state() == {"kind": "per_image", "pixel_mean": None}
    assert Normalization().to(torch.device("cpu")).kind == "per_image"
    assert Normalization.fit("per_image", rows).pixel_mean is None
    with pytest.raises(ValueError, match="normalization must be one of"):
        Normalization.fit("zca", rows)
    with pytest.raises(ValueError, match="at least one training image"):
        Normalization.fit("pixel_mean", rows[:0])
    with pytest.raises(ValueError, match=r"pixel mean of shape \[3, 31, 32\]"):
        Normalization.from_state({"kind": "pixel_mean", "pixel_mean": torch.zeros(3, 31, 32)})


def test_drawn_crops_cover_every_offset_and_flip_half_the_images():
    offsets, flips = draw_crop_flip(18_000, torch.Generator().manual_seed(0))
    assert offsets.shape == (18_000, 2) and offsets.dtype == torch.long
    for axis in range(2):
        counts = torch.bincount(offsets[:, axis], minlength=NUM_OFFSETS)
        assert len(counts) == 9 and counts.min() > 1_800  # each of 0..8 about 2,000 times
    assert flips.dtype == torch.bool and abs(flips.float().mean().item() - 0.5) < 0.02


def test_uint8_channel_with_a_small_spread_is_standardized_not_zeroed():
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[0, :, :, ::2] = 1  # values 0 and 1: population std 0.5
    out = standardize(images)
    assert set(out.unique().tolist()) == {-1.0, 1.0}


def test_constant_float_channel_is_zero_despite_rounding():
    images = torch.full((1, 3, 32, 32), 0.1, dtype=torch.float32)
    images[0, 0, 0, 0] = 0.9  # channel 0 varies, channels 1 and 2 are constant 0.1
    out = standardize(images)
    assert out[0, 1:].abs().max() == 0 and out[0, 0].abs().max() > 1


def test_a_constant_float_channel_with_a_rounded_mean_is_zeros_beside_a_varying_one():
    images = torch.full((1, 3, 32, 32), 0.1, dtype=torch.float64)
    images[0, 0] = torch.linspace(0, 1, 1024, dtype=torch.float64).view(32, 32)
    out = standardize(images)
    assert out.dtype == torch.float32
    assert torch.equal(out[0, 1:], torch.zeros(2, 32, 32))
    assert out[0, 0].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_tiny_float_channels_keep_their_spread():
    images = torch.zeros(1, 3, 32, 32, dtype=torch.float32)
    images[0, :, 0, 0] = 1e-30  # its square underflows in float32
    out = standardize(images)
    assert out[0, :, 0, 0].tolist() == pytest.approx([math.sqrt(1023)] * 3, rel=1e-5)


def test_fitted_normalizations_keep_their_kind_and_float32_mean():
    rows = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072) % 256
    rows = rows.astype(np.uint8)
    per_image = Normalization.fit("per_image", rows)
    assert per_image == Normalization("per_image", None)
    pixel = Normalization.fit("pixel_mean", rows)
    assert pixel.kind == "pixel_mean" and pixel.pixel_mean.dtype == torch.float32
    with pytest.raises(ValueError) as e:
        Normalization.fit("pixel_mean", rows[:0])
    assert str(e.value) == "pixel_mean normalization needs at least one training image"


def test_offsets_of_any_integer_type_crop_the_same_windows():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    offsets = torch.tensor([[0, 8], [8, 0], [3, 4], [1, 1]])
    flips = torch.tensor([True, False, True, False])
    expected = crop_flip(images, offsets, flips)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        assert torch.equal(crop_flip(images, offsets.to(dtype), flips), expected)
