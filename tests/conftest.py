"""Shared test setup: hypothesis profiles (chosen by HYPOTHESIS_PROFILE) and data fixtures."""

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from resnet_repro.archive_writer import fake_batches, write_fake_cifar10
from resnet_repro.cifar import BATCH_DIR
from resnet_repro.config import make_config

# cuBLAS reads its workspace setting when its first handle is made, which in a test session may
# be a test without --deterministic; deterministic runs later in the session need it set by then.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# The decoded-array cache of every run the tests start (subprocesses included) goes to a folder
# of this session, not to the user's cache.
os.environ.setdefault("RESNET_REPRO_CACHE", tempfile.mkdtemp(prefix="resnet-repro-test-cache-"))

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def fake_archive(tmp_path_factory) -> Path:
    """A small fake CIFAR-10 archive: 5 x 40 training and 40 test images."""
    path = tmp_path_factory.mktemp("fake") / "cifar-10-python.tar.gz"
    return write_fake_cifar10(path, train_per_batch=40, test_size=40, seed=0)


@pytest.fixture(scope="session")
def bad_header_tar(tmp_path_factory) -> Path:
    """An uncompressed tar of a small fake archive's members whose last member's header is
    damaged: reading fails while its members are listed, after the batches were read."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        members = fake_batches(train_per_batch=2, test_size=2, seed=0)
        members[f"{BATCH_DIR}/{'x' * 120}"] = b"x"  # a long name: a header, its name, a header
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = bytearray(buf.getvalue())
    header = data.index(b"././@LongLink") + 1024
    data[header : header + 512] = b"\x01" * 512
    path = tmp_path_factory.mktemp("bad") / "bad.tar"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def real_archive() -> Path:
    """The real-image archive named by RESNET_REPRO_CIFAR_ARCHIVE; skips without it."""
    value = os.environ.get("RESNET_REPRO_CIFAR_ARCHIVE")
    if not value:
        pytest.skip("RESNET_REPRO_CIFAR_ARCHIVE is not set: no real CIFAR images here")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"RESNET_REPRO_CIFAR_ARCHIVE={value} does not name a file")
    return path


@pytest.fixture
def real_subset_config(real_archive):
    """The real-image check's setting as a config factory: v1 n=1, paper recipe, 3 epochs on
    9,000 images of the shared subset with the lr divided by 10 after two (step 142), validated
    on 1,000; on the CPU unless ``device`` is given."""

    def make(**overrides):
        values = {
            "version": 1,
            "resnet_size": 1,
            "epochs": 3,
            "milestones": [142],
            "data": str(real_archive),
            "valid_fraction": 0.1,
            "device": "cpu",
        }
        return make_config("paper", **(values | overrides))

    return make


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(
                not torch.cuda.is_available(),
                reason="no CUDA device here: the CUDA tier runs on a GPU machine (pytest -m cuda)",
            ),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each available device in turn: CPU always, CUDA where a GPU is present."""
    return request.param
