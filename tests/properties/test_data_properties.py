"""Properties of the data layer (hypothesis): fake archives round-trip, splits are partitions."""

import pickle
import tarfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.cifar import BATCH_DIR
from resnet_repro.data import load_cifar10, train_valid_split


@settings(max_examples=10)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_fake_archive_round_trips_exactly(tmp_path_factory, train_per_batch, test_size, seed):
    path = tmp_path_factory.mktemp("rt") / "a.tar.gz"
    write_fake_cifar10(path, train_per_batch=train_per_batch, test_size=test_size, seed=seed)
    x_train, y_train, x_test, y_test = load_cifar10(path)
    with tarfile.open(path) as tar:  # an independent decoder: the standard pickle module
        raw = {
            m: tar.extractfile(f"{BATCH_DIR}/{m}").read() for m in ("data_batch_3", "test_batch")
        }
    plain = pickle.loads(raw["data_batch_3"], encoding="latin1")
    rows = slice(2 * train_per_batch, 3 * train_per_batch)
    assert np.array_equal(x_train[rows], plain["data"])
    assert y_train[rows].tolist() == plain["labels"]
    plain = pickle.loads(raw["test_batch"], encoding="bytes")
    assert np.array_equal(x_test, plain[b"data"]) and y_test.tolist() == plain[b"labels"]
    assert x_train.shape == (5 * train_per_batch, 3072) and x_test.shape == (test_size, 3072)


@given(st.integers(2, 500), st.data())
def test_split_never_loses_or_duplicates(n, data):
    x, y = np.arange(n), np.arange(n) % 10
    if data.draw(st.booleans()):
        split = train_valid_split(x, y, data.draw(st.integers(1, n - 1)))
    else:
        fraction = data.draw(st.floats(0.5 / n + 1e-9, 1 - 0.5 / n - 1e-9))
        split = train_valid_split(x, y, valid_fraction=fraction)
    x_tr, y_tr, x_va, y_va = split
    assert len(x_tr) > 0 and len(x_va) > 0
    assert np.array_equal(np.concatenate([x_tr, x_va]), x)
    assert np.array_equal(np.concatenate([y_tr, y_va]), y)
