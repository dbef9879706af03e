"""What CIFAR-10's official Python archive is: its address and checksums, member names, image
counts, label names and record layout, and ``DataError``, which every data problem raises.

Every other data module (fetch, load, pack, fake archives) takes these facts from here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCH_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
DATA_MEMBERS = (*TRAIN_BATCH_MEMBERS, "test_batch", "batches.meta")
OPTIONAL_MEMBERS = ("readme.html",)
OFFICIAL_MEMBER_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
OFFICIAL_COUNTS = {"train": 50_000, "test": 10_000}
LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(LABEL_NAMES)
RECORD_SIZE = 3 * 32 * 32
CHUNK = 1 << 20  # bytes read at a time when hashing or copying


class DataError(Exception):
    """The data on disk or on the wire is not what it must be; the message says which file."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
