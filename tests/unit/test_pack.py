"""Packing an image folder into an official-format archive: a round trip through the loader,
a stratified and seeded split, and clear errors for folders that cannot be packed."""

import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_repro.cifar import LABEL_NAMES, DataError
from resnet_repro.cli import main
from resnet_repro.data import load_cifar10
from resnet_repro.pack import pack_image_folder


def image_folder(root: Path, per_class: int = 6, names=LABEL_NAMES) -> dict[str, np.ndarray]:
    """PNG files (lossless) with random pixels; returns each file's HWC pixels by rel. path."""
    rng = np.random.default_rng(1)
    pixels = {}
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            hwc = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(hwc).save(root / name / f"{i}.png")
            pixels[f"{name}/{i}.png"] = hwc
    return pixels


def test_round_trip_through_the_loader(tmp_path):
    pixels = image_folder(tmp_path / "imgs")
    packed = pack_image_folder(tmp_path / "imgs", tmp_path / "a.tar.gz", test_fraction=1 / 3)
    assert (packed.train_images, packed.test_images) == (40, 20)
    x, y, x_test, y_test = load_cifar10(packed.path)
    assert len(y) == 40 and len(y_test) == 20
    # Stratified: every class holds out exactly 2 of its 6 images.
    assert np.bincount(y_test, minlength=10).tolist() == [2] * 10
    assert np.bincount(y, minlength=10).tolist() == [4] * 10
    # Each packed row is its source file's pixels, in the official plane layout.
    rows = {row.tobytes() for row in np.concatenate([x, x_test])}
    for rel, hwc in pixels.items():
        assert hwc.transpose(2, 0, 1).reshape(-1).tobytes() in rows, rel
    # Labels follow CIFAR-10's order for its class names.
    for row, label in zip(x, y, strict=True):
        name = next(k for k, v in pixels.items() if v.transpose(2, 0, 1).tobytes() == row.tobytes())
        assert name.split("/")[0] == LABEL_NAMES[label]


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
    image_folder(tmp_path / "imgs")
    a = pack_image_folder(tmp_path / "imgs", tmp_path / "a.tar.gz", seed=3)
    b = pack_image_folder(tmp_path / "imgs", tmp_path / "b.tar.gz", seed=3)
    c = pack_image_folder(tmp_path / "imgs", tmp_path / "c.tar.gz", seed=4)
    assert a.md5 == b.md5 != c.md5


def test_cli_prints_counts_and_md5(tmp_path, capsys):
    image_folder(tmp_path / "imgs")
    assert main(["pack", str(tmp_path / "imgs"), str(tmp_path / "p.tar.gz")]) == 0
    out = capsys.readouterr().out
    assert "50 training and 10 test images of 10 classes; md5 " in out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: image_folder(r, names=LABEL_NAMES[:9]), "expected 10 class folders"),
        (lambda r: image_folder(r, per_class=1), "each class needs at least 2"),
        (lambda r: (image_folder(r), (r / "cat/bad.png").write_text("text")), "cannot be read"),
        (
            lambda r: (
                image_folder(r),
                Image.new("RGB", (40, 32)).save(r / "cat" / "big.png"),
            ),
            "image is 40x32, expected 32x32",
        ),
    ],
    ids=["nine-classes", "one-image", "not-an-image", "wrong-size"],
)
def test_folders_that_cannot_be_packed(tmp_path, make, message):
    make(tmp_path / "imgs")
    out = tmp_path / "out.tar.gz"
    with pytest.raises(DataError, match=message):
        pack_image_folder(tmp_path / "imgs", out)
    assert not out.exists() and os.listdir(tmp_path) == ["imgs"], "nothing half-written"


def test_missing_folder_and_bad_fraction(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "none"), str(tmp_path / "o.tar.gz")]) == 1
    assert "no such folder" in capsys.readouterr().err
    image_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"test_fraction must be in \[0, 1\)"):
        pack_image_folder(tmp_path / "imgs", tmp_path / "o.tar.gz", test_fraction=1.0)


def test_shared_jpeg_images_pack_and_load(tmp_path):
    """The JPEG training images that RESNET_REPRO_JPEG_ARCHIVE names (train/<class>/N.jpg in a
    .tar.xz; .ci/run points it at the shared copy), a 2,000-image slice of them for time."""
    value = os.environ.get("RESNET_REPRO_JPEG_ARCHIVE")
    if not value:
        pytest.skip("RESNET_REPRO_JPEG_ARCHIVE is not set: no JPEG image folder here")
    source = Path(value)
    root = tmp_path / "jpeg"
    with tarfile.open(source, "r:xz") as tar:
        wanted = []
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and int(Path(parts[2]).stem) < 200:
                wanted.append(member)
        tar.extractall(root, members=wanted, filter="data")
    packed = pack_image_folder(root / "train", tmp_path / "jpeg.tar.gz", seed=0)
    x, y, x_test, y_test = load_cifar10(packed.path)
    assert x.shape == (2000 - 330, 3072) and x_test.shape == (330, 3072)
    assert len(y) + len(y_test) == 2000
    assert np.bincount(y_test).tolist() == [33] * 10


def test_a_packed_archives_class_names_reach_the_checkpoint_and_predict(tmp_path, capsys):
    """Classes c0..c9, packed, trained, predicted: predict prints the archive's names, not
    CIFAR-10's (batches.meta's label_names, kept in each checkpoint)."""
    names = [f"c{i}" for i in range(10)]
    image_folder(tmp_path / "imgs", names=names)
    packed = pack_image_folder(tmp_path / "imgs", tmp_path / "a.tar.gz", test_fraction=1 / 3)
    args = ["train", "--recipe", "seed", "--resnet-version", "1", "--resnet-size", "1"]
    args += ["--epochs", "1", "--continue-epochs", "0", "--batch-size", "8"]
    args += ["--valid-fraction", "0.2", "--device", "cpu", "--data", str(packed.path)]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    image = tmp_path / "imgs" / "c3" / "0.png"
    assert main(["predict", "--checkpoint", str(tmp_path / "run/model-1.ckpt"), str(image)]) == 0
    printed = capsys.readouterr().out
    assert printed.split(": ", 1)[1].split()[0] in names
    assert not any(name in printed for name in LABEL_NAMES)


RAMP = np.arange(32 * 32).reshape(32, 32)


def saved(tmp_path, image, name):
    path = tmp_path / name
    image.save(path)
    return path


def grey(values) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=np.uint8)[..., None], 3, axis=2)


def mode_cases():
    """(name, make(tmp_path) -> path, the expected [32, 32, 3] uint8 image or an error line)."""
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    wide16 = (RAMP * 64).astype(np.uint16)
    wide32 = (RAMP * 2_000_000).astype(np.int32)
    floats = (RAMP / RAMP.max()).astype(np.float32)
    half = np.dstack([rgb, np.full((32, 32), 128, np.uint8)])
    over_white = np.round(rgb * (128 / 255) + 255 * (127 / 255)).astype(np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    return [
        ("RGB png", lambda t: saved(t, Image.fromarray(rgb), "a.png"), rgb),
        ("L png", lambda t: saved(t, Image.fromarray(rgb[..., 0]), "a.png"), grey(rgb[..., 0])),
        (
            "1 png",
            lambda t: saved(t, Image.fromarray(rgb[..., 0] > 127), "a.png"),
            grey(np.where(rgb[..., 0] > 127, 255, 0)),
        ),
        ("P png", lambda t: saved(t, palette, "a.png"), np.asarray(palette.convert("RGB"))),
        (
            "I;16 png",
            lambda t: saved(t, Image.fromarray(wide16), "a.png"),
            grey(np.round(wide16 / 257)),
        ),
        (
            "I tiff",
            lambda t: saved(t, Image.fromarray(wide32), "a.tif"),
            grey(np.round(wide32 * (255 / (2**31 - 1)))),
        ),
        (
            "F tiff",
            lambda t: saved(t, Image.fromarray(floats), "a.tif"),
            grey(np.round(floats.astype(np.float64) * 255)),
        ),
        ("RGBA png", lambda t: saved(t, Image.fromarray(half), "a.png"), over_white),
        (
            "CMYK jpeg-free tiff",
            lambda t: saved(t, Image.fromarray(rgb).convert("CMYK"), "a.tif"),
            np.asarray(Image.fromarray(rgb).convert("CMYK").convert("RGB")),
        ),
        (
            "F outside 0..1",
            lambda t: saved(t, Image.fromarray(floats * 3), "a.tif"),
            "F image with values 0..3, outside 0..1; save it as an 8-bit image",
        ),
        (
            "I negative",
            lambda t: saved(t, Image.fromarray(wide32 - 5), "a.tif"),
            "I image with values -5..2.046e+09, outside 0..2.14748e+09",
        ),
        (
            "LAB tiff",
            lambda t: saved(t, Image.fromarray(rgb, "LAB"), "a.tif"),
            "CIE L*a*b* image; convert it to RGB",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "make", "expected"), mode_cases(), ids=[c[0] for c in mode_cases()]
)
def test_every_image_mode_converts_faithfully_or_is_refused_in_one_line(
    tmp_path, capsys, name, make, expected
):
    """One reader for pack and predict: the same result for both, or the same one-line error."""
    from resnet_repro.pack import read_image

    path = make(tmp_path)
    if isinstance(expected, str):
        for resize in (False, True):
            with pytest.raises(DataError, match=re.escape(expected)):
                read_image(path, resize=resize)
        return
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert np.array_equal(got, expected), name
    assert np.array_equal(read_image(path, resize=True), expected)


def test_a_folder_of_16_bit_grey_pngs_packs_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(2)
    for name in LABEL_NAMES:
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            wide = rng.integers(0, 65536, (32, 32), dtype=np.uint16)
            Image.fromarray(wide).save(tmp_path / "imgs" / name / f"{i}.png")
    packed = pack_image_folder(tmp_path / "imgs", tmp_path / "a.tar.gz", test_fraction=1 / 3)
    x = load_cifar10(packed.path)[0]
    assert (x == 255).mean() < 0.01 and 100 < x.mean() < 155


def test_packing_into_an_existing_folder_is_one_line(tmp_path, capsys):
    image_folder(tmp_path / "imgs")
    (tmp_path / "out").mkdir()
    assert main(["pack", str(tmp_path / "imgs"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "out is a folder; name the archive file to write, e.g. "
        + str(tmp_path / "out" / "archive.tar.gz")
    )
    assert len(err.splitlines()) == 1 and list((tmp_path / "out").iterdir()) == []
