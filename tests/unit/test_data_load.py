"""load_cifar10 and friends: restricted unpickling, validation, cache, split, fake archive."""

import logging
import os
import pickle
import pickletools
import tarfile
from pathlib import Path

import numpy as np
import pytest

from resnet_repro.archive_writer import (
    dump_py2_pickle,
    fake_batches,
    write_fake_cifar10,
    write_tar_gz,
)
from resnet_repro.cifar import BATCH_DIR, LABEL_NAMES, DataError, md5_of
from resnet_repro.config import ConfigError, make_config
from resnet_repro.data import (
    _check_official_counts,
    check_batches,
    default_cache_dir,
    load_batch,
    load_cifar10,
    load_source,
    load_splits,
    train_valid_split,
)


def archive_with(tmp_path, name: str, batch_bytes: bytes):
    members = fake_batches(train_per_batch=4, test_size=4, seed=0)
    members[f"{BATCH_DIR}/{name}"] = batch_bytes
    return write_tar_gz(tmp_path / "a.tar.gz", members)


def batch(data, labels):
    return dump_py2_pickle({"batch_label": "b", "labels": labels, "data": data, "filenames": []})


def test_fake_archive_loads_with_expected_shapes(fake_archive):
    x_train, y_train, x_test, y_test = load_cifar10(fake_archive)
    assert x_train.shape == (200, 3072) and x_train.dtype == np.uint8
    assert y_train.shape == (200,) and y_train.dtype == np.int64
    assert x_test.shape == (40, 3072) and y_test.shape == (40,)
    assert np.bincount(y_train).tolist() == [20] * 10


def test_same_arguments_same_bytes(tmp_path):
    a = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=7, test_size=3, seed=5)
    b = write_fake_cifar10(tmp_path / "b.tar.gz", train_per_batch=7, test_size=3, seed=5)
    c = write_fake_cifar10(tmp_path / "c.tar.gz", train_per_batch=7, test_size=3, seed=6)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def opcodes(data: bytes) -> list[str]:
    """Opcode names, with runs of small ints/strings collapsed and int widths unified."""
    names = []
    for op, _, _ in pickletools.genops(data):
        name = "INT" if op.name.startswith("BININT") else op.name
        if not (names and name == names[-1] and name in ("INT", "SHORT_BINSTRING")):
            names.append(name)
    return names


# The layout of an official CIFAR-10 batch (and of the shared real-image subset).
OFFICIAL_LAYOUT = (
    "PROTO EMPTY_DICT MARK SHORT_BINSTRING EMPTY_LIST MARK INT APPENDS SHORT_BINSTRING GLOBAL "
    "GLOBAL INT TUPLE1 SHORT_BINSTRING TUPLE3 REDUCE MARK INT MARK INT TUPLE GLOBAL "
    "SHORT_BINSTRING NEWFALSE NEWTRUE TUPLE3 REDUCE MARK INT SHORT_BINSTRING NONE NONE NONE INT "
    "TUPLE BUILD NEWFALSE BINSTRING TUPLE BUILD SHORT_BINSTRING EMPTY_LIST MARK SHORT_BINSTRING "
    "APPENDS SETITEMS STOP"
).split()


def test_fake_batch_has_the_official_byte_layout():
    raw = fake_batches(train_per_batch=3, test_size=2, seed=0)[f"{BATCH_DIR}/data_batch_1"]
    assert opcodes(raw) == OFFICIAL_LAYOUT
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"U\x0bbatch_label" in raw


def test_real_archive_batches_have_the_same_layout(real_archive):
    with tarfile.open(real_archive) as tar:
        raw = tar.extractfile(f"{BATCH_DIR}/data_batch_1").read()
    assert opcodes(raw) == OFFICIAL_LAYOUT


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_fake_batch_loads_with_both_encodings(encoding):
    raw = fake_batches(train_per_batch=3, test_size=2, seed=0)[f"{BATCH_DIR}/data_batch_1"]
    batch_ = load_batch(raw, name="b", encoding=encoding)
    assert sorted(batch_) == ["batch_label", "data", "filenames", "labels"]
    plain = pickle.loads(raw, encoding=encoding)
    key = b"data" if encoding == "bytes" else "data"
    assert np.array_equal(batch_["data"], plain[key])


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_real_archive_loads_with_both_encodings(real_archive, encoding):
    with tarfile.open(real_archive) as tar:
        raw = tar.extractfile(f"{BATCH_DIR}/data_batch_1").read()
    batch_ = load_batch(raw, name="b", encoding=encoding)
    assert batch_["data"].shape == (2000, 3072) and len(batch_["labels"]) == 2000


def test_real_archive_counts_per_class(real_archive, tmp_path):
    x_train, y_train, x_test, y_test = load_cifar10(real_archive, cache_dir=tmp_path)
    assert x_train.shape == (10_000, 3072) and x_test.shape == (2_000, 3072)
    assert np.bincount(y_train, minlength=10).tolist() == [1000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [200] * 10


def test_python3_pickles_load_too(tmp_path):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=2)  # uses _codecs.encode
    assert np.array_equal(load_batch(raw, name="b")["data"], data)


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    raw = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    archive = archive_with(tmp_path, "data_batch_2", raw)
    with pytest.raises(DataError, match=r"data_batch_2.*global os.system is not allowed"):
        load_cifar10(archive)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("data_batch_1", batch(np.zeros((4, 100), np.uint8), [0] * 4), "3072 columns, got shape"),
        (
            "data_batch_4",
            batch(np.zeros((4, 3072), np.uint8), [0, 1, 10, 2]),
            "label 10 at index 2",
        ),
        ("test_batch", batch(np.zeros((0, 3072), np.uint8), []), "test_batch: the batch is empty"),
        ("data_batch_2", batch(np.zeros((4, 3072), np.int64), [0] * 4), "uint8 array"),
        ("data_batch_3", batch(np.zeros((4, 3072), np.uint8), [0] * 3), "4 images but labels"),
        ("data_batch_5", dump_py2_pickle({"labels": [0]}), "no 'data' entry"),
        ("data_batch_5", dump_py2_pickle([1, 2]), "expected a dict"),
        ("data_batch_1", b"\x80\x02}(U\x04data", "cannot be read as a CIFAR batch"),
    ],
)
def test_bad_batches(tmp_path, name, raw, message):
    with pytest.raises(DataError, match=message) as info:
        load_cifar10(archive_with(tmp_path, name, raw))
    assert name in str(info.value)


def test_missing_batch(tmp_path):
    members = fake_batches(train_per_batch=2, test_size=2, seed=0)
    del members[f"{BATCH_DIR}/test_batch"]
    with pytest.raises(DataError, match="missing CIFAR-10 files test_batch"):
        load_cifar10(write_tar_gz(tmp_path / "a.tar.gz", members))


def test_missing_source_and_truncated_archive(fake_archive, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_cifar10(tmp_path / "nowhere")
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(fake_archive.read_bytes()[:3000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_cifar10(truncated)


def test_official_counts_are_checked():
    y_train = np.repeat(np.arange(10), 5000)
    y_train[0] = 1
    arrays = (np.zeros((50_000, 1)), y_train, np.zeros((10_000, 1)), np.repeat(np.arange(10), 1000))
    with pytest.raises(DataError, match="train images per class are"):
        _check_official_counts("x", arrays)
    with pytest.raises(DataError, match="49999 train images, the official archive has 50000"):
        _check_official_counts("x", (arrays[0][1:], arrays[1][1:], *arrays[2:]))


def test_folder_sources_load_like_the_archive(fake_archive, tmp_path):
    with tarfile.open(fake_archive) as tar:
        tar.extractall(tmp_path, filter="data")
    expected = load_cifar10(fake_archive)
    for source in (tmp_path, tmp_path / BATCH_DIR):
        for a, b in zip(load_cifar10(source), expected, strict=True):
            assert np.array_equal(a, b)


def test_cache_is_keyed_by_content_and_used_while_the_files_are_unchanged(tmp_path):
    archive = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=10, test_size=10, seed=1)
    cache = tmp_path / "cache"
    first = load_cifar10(archive, cache_dir=cache)
    first_md5 = md5_of(archive)
    assert (cache / first_md5 / "complete").is_file()
    cached = load_cifar10(archive, cache_dir=cache)
    assert isinstance(cached[0], np.memmap)
    assert all(np.array_equal(a, b) for a, b in zip(first, cached, strict=True))
    write_fake_cifar10(archive, train_per_batch=10, test_size=10, seed=2)
    rebuilt = load_cifar10(archive, cache_dir=cache)
    assert not np.array_equal(rebuilt[0], first[0])
    assert {p.name for p in cache.iterdir()} == {"sources", first_md5, md5_of(archive)}


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("x_train.npy", "random bytes of the same size"),
        ("y_train.npy", "zeros of the same size"),
        ("x_test.npy", "one byte flipped"),
        ("y_test.npy", "one byte flipped"),
        ("label_names.json", "other names"),
        ("complete", "another digest"),
    ],
)
def test_a_damaged_cache_entry_is_rebuilt_with_a_line_saying_so(tmp_path, caplog, name, damage):
    """Same-size corruption of any file of a cache entry: the entry is not trained on, the
    arrays are decoded again (and equal the source's), one line names the damaged file."""
    archive = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=10, test_size=10, seed=1)
    cache = tmp_path / "cache"
    expected = load_source(archive, cache_dir=cache)
    path = cache / md5_of(archive) / name
    data = bytearray(path.read_bytes())
    if damage == "random bytes of the same size":
        data[:] = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    elif damage == "zeros of the same size":
        header = len(data) - 8 * 50  # keep the .npy header: a valid array of zero labels
        data[header:] = bytes(len(data) - header)
    elif damage == "other names":
        data[:] = data.replace(b"airplane", b"aeroplan")
    elif damage == "another digest":
        data[10:12] = b"00" if data[10:12] != b"00" else b"11"
    else:
        data[-1] ^= 1
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        again = load_source(archive, cache_dir=cache)
    assert "changed since it was written; decoding the data again" in caplog.text
    assert (name if name != "complete" else "x_train.npy") in caplog.text
    assert again.label_names == expected.label_names
    for a, b in zip(again.arrays, expected.arrays, strict=True):
        assert np.array_equal(a, b)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        load_source(archive, cache_dir=cache)
    assert caplog.text == ""  # rebuilt: the next load uses it silently


def test_another_archive_extracted_over_a_folder_is_never_served_from_the_cache(tmp_path):
    """Extract A into F, load; extract B over it with tar (the same sizes, the archive's
    modification times restored): the load gives B's images and md5, not A's, and nothing is
    written into F."""
    a = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=10, test_size=10, seed=1)
    b = write_fake_cifar10(tmp_path / "b.tar.gz", train_per_batch=10, test_size=10, seed=2)
    folder, cache = tmp_path / "F", tmp_path / "cache"
    folder.mkdir()
    with tarfile.open(a) as tar:
        tar.extractall(folder, filter="data")
    loaded = load_source(folder, cache_dir=cache)
    from_a, a_md5 = loaded.arrays, loaded.source_md5
    listing = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with tarfile.open(b) as tar:
        tar.extractall(folder, filter="data")
    loaded = load_source(folder, cache_dir=cache)
    from_b, b_md5 = loaded.arrays, loaded.source_md5
    assert np.array_equal(from_b[0], load_cifar10(b)[0])
    assert not np.array_equal(from_b[0], from_a[0]) and a_md5 != b_md5
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == listing


def test_a_read_only_data_folder_loads_and_an_unwritable_cache_warns(tmp_path, monkeypatch, caplog):
    archive = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=10, test_size=10, seed=1)
    folder = tmp_path / "data"
    folder.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    for p in (folder, folder / BATCH_DIR):
        p.chmod(0o555)
    blocked = tmp_path / "blocked"
    blocked.mkdir(mode=0o555)
    try:
        monkeypatch.setenv("RESNET_REPRO_CACHE", str(tmp_path / "cache"))
        config = make_config("seed", data=str(folder), valid_fraction=0.1)
        assert len(load_splits(config).y_train) == 45
        if os.geteuid() != 0:  # root writes anywhere
            with caplog.at_level(logging.WARNING, logger="resnet_repro"):
                load_cifar10(folder, cache_dir=blocked / "c")
            assert "training goes on without it" in caplog.text
    finally:
        for p in (folder, folder / BATCH_DIR, blocked):
            p.chmod(0o755)


def test_the_default_cache_is_the_platforms_unless_overridden(monkeypatch, tmp_path):
    from platformdirs import user_cache_dir

    monkeypatch.setenv("RESNET_REPRO_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("RESNET_REPRO_CACHE")
    assert default_cache_dir() == Path(user_cache_dir("resnet_repro"))


def test_seed_split():
    x, y = np.arange(50_000), np.arange(50_000) % 10
    x_tr, _, x_va, _ = train_valid_split(x, y)
    assert len(x_tr) == 45_000 and len(x_va) == 5_000 and x_va[0] == 45_000
    x_tr, _, x_va, _ = train_valid_split(x[:100], y[:100], valid_fraction=0.1)
    assert len(x_tr) == 90 and len(x_va) == 10


def test_papers_split_trains_on_all_fifty_thousand():
    x, y = np.arange(50_000), np.arange(50_000) % 10
    x_tr, _, x_va, y_va = train_valid_split(x, y, 50_000)
    assert len(x_tr) == 50_000 and len(x_va) == len(y_va) == 0
    assert make_config("paper").split_index == 50_000
    assert make_config("paper-valid").split_index == 45_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"split_index 45000 is outside 1..100"),
        ({"split_index": 101}, r"split_index 101 is outside 1..100"),
        ({"valid_fraction": 1.0}, r"valid_fraction must be in \(0, 1\)"),
        ({"split_index": 0}, "split_index 0"),
    ],
)
def test_bad_splits(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_valid_split(np.zeros(100), np.zeros(100), **kwargs)


# What loading decides and records, line by line (each test kills a mutant of data.py).


def small_archive(tmp_path: Path, name: str = "a.tar.gz", seed: int = 1, **replace) -> Path:
    members = fake_batches(train_per_batch=2, test_size=10, seed=seed)
    members.update({f"{BATCH_DIR}/{m}": data for m, data in replace.items()})
    return write_tar_gz(tmp_path / name, members)


def message_of(call) -> str:
    with pytest.raises(DataError) as e:
        call()
    return str(e.value)


def test_batch_errors_say_what_was_found(tmp_path):
    def error(raw, name="data_batch_1"):
        return message_of(lambda: load_cifar10(small_archive(tmp_path, **{name: raw})))

    where = f"{tmp_path / 'a.tar.gz'}:data_batch_1"
    assert error(dump_py2_pickle([1])) == f"{where}: expected a dict, got list"
    assert error(batch([[0] * 3072] * 2, [0, 1])) == (
        f"{where}: data must be a uint8 array [N, 3072], got list"
    )
    assert error(batch(np.zeros((2, 3072), np.float32), [0, 1])) == (
        f"{where}: data must be a uint8 array [N, 3072], got float32 [2, 3072]"
    )
    assert error(batch(np.zeros((2, 3072), np.uint8), [0, 10])) == (
        f"{where}: label 10 at index 1 is outside 0..9"
    )
    assert error(batch(np.zeros((2, 3072), np.uint8), ["a", "b"])).startswith(
        f"{where}: labels are not integers ("
    )
    test_where = f"{tmp_path / 'a.tar.gz'}:test_batch"
    assert error(b"junk", "test_batch").startswith(f"{test_where}: cannot be read as a CIFAR batch")


def test_labels_of_any_integer_type_come_back_as_int64(tmp_path):
    labels = np.array([3, 4], np.uint8)
    archive = small_archive(tmp_path, data_batch_1=batch(np.zeros((2, 3072), np.uint8), labels))
    _, y_train, _, _ = load_cifar10(archive)
    assert y_train.dtype == np.int64 and y_train[:2].tolist() == [3, 4]


def meta(names) -> bytes:
    return pickle.dumps({"label_names": names}, protocol=2)


def test_class_names_come_from_batches_meta_as_text(tmp_path):
    names = [f"class {i}" for i in range(10)]
    assert load_source(small_archive(tmp_path, **{"batches.meta": meta(names)})).label_names == (
        tuple(names)
    )
    raw = [b"\xffcat", *(f"c{i}".encode() for i in range(9))]
    loaded = load_source(small_archive(tmp_path, "b.tar.gz", **{"batches.meta": meta(raw)}))
    assert loaded.label_names[0] == "\ufffdcat"
    without = small_archive(tmp_path, "c.tar.gz", **{"batches.meta": b""})
    assert message_of(lambda: load_source(without)).startswith(
        f"{without}:batches.meta: cannot be read"
    )
    plain = small_archive(tmp_path, "d.tar.gz", **{"batches.meta": pickle.dumps({}, protocol=2)})
    assert load_source(plain).label_names == LABEL_NAMES


@pytest.mark.parametrize("names", [[f"c{i}" for i in range(9)], ["", *(f"c{i}" for i in range(9))]])
def test_class_names_must_be_ten_non_empty_ones(tmp_path, names):
    archive = small_archive(tmp_path, **{"batches.meta": meta(names)})
    assert message_of(lambda: load_source(archive)) == (
        f"{archive}:batches.meta: label_names must be 10 non-empty names, got {names!r}"
    )
    folder = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    assert message_of(lambda: check_batches(folder / BATCH_DIR, name="the archive")) == (
        f"the archive:batches.meta: label_names must be 10 non-empty names, got {names!r}"
    )


def test_check_batches_names_the_archive_in_its_errors(tmp_path):
    archive = small_archive(tmp_path, data_batch_3=b"junk")
    folder = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    assert message_of(lambda: check_batches(folder / BATCH_DIR, name="the archive")).startswith(
        "the archive:data_batch_3: cannot be read as a CIFAR batch"
    )


def test_members_that_break_the_rules_are_refused_naming_the_archive(tmp_path, bad_header_tar):
    members = fake_batches(train_per_batch=2, test_size=2, seed=0)
    members[f"{BATCH_DIR}/extra"] = b"x"
    archive = write_tar_gz(tmp_path / "a.tar.gz", members)
    assert message_of(lambda: load_cifar10(archive)) == (
        f"{archive}: unexpected member '{BATCH_DIR}/extra'"
    )
    whole = small_archive(tmp_path, "whole.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) - 200])
    assert message_of(lambda: load_cifar10(cut)).startswith(f"{cut}: archive is truncated")
    assert message_of(lambda: load_cifar10(bad_header_tar)) == (
        f"{bad_header_tar}: archive is truncated or corrupt (invalid header)"
    )


def test_the_missing_files_error_names_each(tmp_path):
    members = fake_batches(train_per_batch=2, test_size=2, seed=0)
    del members[f"{BATCH_DIR}/data_batch_1"], members[f"{BATCH_DIR}/test_batch"]
    archive = write_tar_gz(tmp_path / "a.tar.gz", members)
    assert message_of(lambda: load_cifar10(archive)) == (
        f"{archive}: missing CIFAR-10 files data_batch_1, test_batch"
    )


def test_a_folder_without_fetchs_record_is_identified_by_its_batch_files(tmp_path):
    """The md5 a run records for such a folder: the md5 of its data members' md5s, in name
    order (the same files give the same md5 wherever they are)."""
    import hashlib

    archive = small_archive(tmp_path)
    folder = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    batches = folder / BATCH_DIR
    names = sorted(p.name for p in batches.iterdir() if p.name != "readme.html")
    digests = "".join(hashlib.md5((batches / n).read_bytes()).hexdigest() for n in names)
    assert load_source(batches).source_md5 == hashlib.md5(digests.encode()).hexdigest()


def official_as(monkeypatch, archive: Path, train: int, test: int) -> None:
    """This archive's member digests and counts stand in for the official archive's."""
    import hashlib

    import resnet_repro.data as data

    with tarfile.open(archive) as tar:
        digests = {
            Path(m.name).name: hashlib.md5(tar.extractfile(m).read()).hexdigest()
            for m in tar
            if not m.name.endswith("readme.html")
        }
    monkeypatch.setattr(data, "OFFICIAL_MEMBER_MD5", digests)
    monkeypatch.setattr(data, "OFFICIAL_COUNTS", {"train": train, "test": test})


def test_the_official_archives_counts_are_checked_by_its_members(tmp_path, monkeypatch):
    members = fake_batches(train_per_batch=10, test_size=10, seed=0)  # balanced: 5 and 1 a class
    archive = write_tar_gz(tmp_path / "a.tar.gz", members)
    official_as(monkeypatch, archive, train=50, test=10)
    assert len(load_cifar10(archive)[0]) == 50
    official_as(monkeypatch, archive, train=50, test=20)
    assert message_of(lambda: load_cifar10(archive)) == (
        f"{archive}: 10 test images, the official archive has 20"
    )
    labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]  # no image of class 9
    members[f"{BATCH_DIR}/test_batch"] = batch(np.zeros((10, 3072), np.uint8), labels)
    unbalanced = write_tar_gz(tmp_path / "u.tar.gz", members)
    official_as(monkeypatch, unbalanced, train=50, test=10)
    assert message_of(lambda: load_cifar10(unbalanced)) == (
        f"{unbalanced}: test images per class are [1, 1, 1, 1, 1, 1, 1, 1, 2, 0], expected 1 each"
    )


def test_a_source_seen_before_is_not_read_again(tmp_path, monkeypatch):
    """Two sources cached side by side; each loads again from its record alone, with its
    md5 and class names, and a record whose md5 is not text is not believed."""
    import resnet_repro.data as data

    cache = tmp_path / "cache"
    a, b = small_archive(tmp_path, "a.tar.gz", 1), small_archive(tmp_path, "b.tar.gz", 2)
    expected = {p: load_source(p, cache_dir=cache) for p in (a, b)}
    read = data._read_members
    monkeypatch.setattr(data, "_read_members", lambda source: pytest.fail(f"{source} read again"))
    for p in (a, b):
        again = load_source(p, cache_dir=cache)
        assert (again.source_md5, again.label_names) == (md5_of(p), LABEL_NAMES)
        assert np.array_equal(again.arrays[0], expected[p].arrays[0])
    [record] = [r for r in (cache / "sources").iterdir() if md5_of(a) in r.read_text()]
    record.write_text(record.read_text().replace(f'"{md5_of(a)}"', "123"))
    monkeypatch.setattr(data, "_read_members", read)
    assert load_source(a, cache_dir=cache).source_md5 == md5_of(a)


def test_the_same_content_under_another_name_is_not_decoded_again(tmp_path, monkeypatch):
    import shutil

    import resnet_repro.data as data

    cache = tmp_path / "cache"
    a = small_archive(tmp_path)
    load_source(a, cache_dir=cache)
    copy = tmp_path / "copy.tar.gz"
    shutil.copyfile(a, copy)
    monkeypatch.setattr(data, "_decode", lambda *args: pytest.fail("decoded again"))
    loaded = load_source(copy, cache_dir=cache)
    assert (loaded.source_md5, loaded.label_names) == (md5_of(a), LABEL_NAMES)


def test_a_changed_batch_in_a_batch_folder_is_read_again(tmp_path):
    folder = tmp_path / "x"
    with tarfile.open(small_archive(tmp_path, seed=1)) as tar:
        tar.extractall(folder, filter="data")
    other = small_archive(tmp_path, "b.tar.gz", seed=2)
    cache = tmp_path / "cache"
    batches = folder / BATCH_DIR
    load_source(batches, cache_dir=cache)
    with tarfile.open(other) as tar:
        (batches / "data_batch_1").write_bytes(tar.extractfile(f"{BATCH_DIR}/data_batch_1").read())
    assert np.array_equal(load_cifar10(batches, cache_dir=cache)[0][:2], load_cifar10(other)[0][:2])


def test_a_cache_entry_cut_short_is_decoded_again_silently(tmp_path, caplog):
    archive = small_archive(tmp_path)
    cache = tmp_path / "cache"
    load_source(archive, cache_dir=cache)
    (cache / md5_of(archive) / "complete").unlink()  # a writer stopped before its marker
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        assert load_source(archive, cache_dir=cache).label_names == LABEL_NAMES
    assert caplog.messages == []
    assert (cache / md5_of(archive) / "complete").is_file()


def test_a_damaged_cache_entry_is_named_with_each_damaged_file(tmp_path, caplog):
    archive = small_archive(tmp_path)
    cache = tmp_path / "cache"
    load_source(archive, cache_dir=cache)
    folder = cache / md5_of(archive)
    (folder / "y_test.npy").unlink()
    (folder / "x_train.npy").write_bytes(b"other")
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        load_source(archive, cache_dir=cache)
    assert caplog.messages == [
        f"decoded-array cache {folder}: x_train.npy, y_test.npy changed since it was written; "
        "decoding the data again"
    ]
    (folder / "complete").write_text("not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        assert load_source(archive, cache_dir=cache).label_names == LABEL_NAMES
    [line] = caplog.messages
    assert line.startswith(f"decoded-array cache {folder} unreadable (Expecting value")
    assert line.endswith("); decoding the data again")


def test_a_cache_that_cannot_be_written_is_skipped_with_a_line_saying_so(tmp_path, caplog):
    archive = small_archive(tmp_path)
    (tmp_path / "file").write_text("x")
    cache = tmp_path / "file" / "cache"
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        assert load_source(archive, cache_dir=cache).source_md5 == md5_of(archive)
    assert caplog.messages == [
        f"decoded-array cache {cache / md5_of(archive)} not written (Not a directory); training "
        "goes on without it (choose another folder with --cache-dir or RESNET_REPRO_CACHE)"
    ]


def test_split_errors_say_what_to_do():
    x = np.zeros(100)
    with pytest.raises(ValueError) as e:
        train_valid_split(x, np.zeros(99))
    assert str(e.value) == "train_valid_split: 100 images but 99 labels"
    with pytest.raises(ValueError) as e:
        train_valid_split(x, x, valid_fraction=0.0)
    assert str(e.value) == "train_valid_split: valid_fraction must be in (0, 1), got 0.0"
    with pytest.raises(ValueError) as e:
        train_valid_split(x, x, 101)
    assert str(e.value) == (
        "train_valid_split: split_index 101 is outside 1..100 (the number of training "
        "examples); use valid_fraction for a small data set"
    )


def test_load_splits_splits_as_the_config_says_and_caches_where_it_says(tmp_path, monkeypatch):
    names = [f"class {i}" for i in range(10)]
    archive = small_archive(tmp_path, **{"batches.meta": meta(names)})
    x, y, x_test, y_test = load_cifar10(archive)
    monkeypatch.setenv("RESNET_REPRO_CACHE", str(tmp_path / "default"))
    splits = load_splits(make_config("seed", data=str(archive), split_index=10))
    assert (len(splits.x_train), len(splits.x_valid)) == (10, 0)
    assert (tmp_path / "default" / md5_of(archive) / "complete").is_file()
    chosen = tmp_path / "chosen"
    splits = load_splits(
        make_config("seed", data=str(archive), split_index=7, cache_dir=str(chosen))
    )
    assert (chosen / md5_of(archive) / "complete").is_file()
    assert np.array_equal(splits.x_train, x[:7]) and np.array_equal(splits.y_valid, y[7:])
    assert type(splits.x_test) is np.ndarray and np.array_equal(splits.x_test, x_test)
    assert type(splits.y_test) is np.ndarray and np.array_equal(splits.y_test, y_test)
    assert (splits.source_md5, splits.label_names) == (md5_of(archive), tuple(names))
    splits = load_splits(make_config("seed", data=str(archive), valid_fraction=0.2))
    assert (len(splits.x_train), len(splits.x_valid)) == (8, 2)
    with pytest.raises(ConfigError) as e:
        load_splits(make_config("seed", data=str(archive), split_index=11))
    assert str(e.value) == (
        f"split_index 11 is beyond the 10 training images of {archive}; set valid_fraction "
        "(e.g. 0.1) for a small data set"
    )


def test_a_damaged_entry_of_a_fetched_folder_is_reported_once(tmp_path, caplog):
    """A folder fetch extracted is known by its archive's md5, which is not its content
    digest: the entry its record points to is checked once, not again after the read."""
    import warnings

    from resnet_repro.download import Download
    from resnet_repro.fetch import fetch_cifar10

    archive = small_archive(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = fetch_cifar10(
            tmp_path / "d", archive=archive, md5=md5_of(archive), download=Download(progress=False)
        )
    cache = tmp_path / "cache"
    load_source(batches, cache_dir=cache)
    [entry] = [p for p in cache.iterdir() if p.name != "sources"]
    (entry / "y_test.npy").write_bytes(b"other")
    with caplog.at_level(logging.WARNING, logger="resnet_repro"):
        assert load_source(batches, cache_dir=cache).source_md5 == md5_of(archive)
    assert len(caplog.messages) == 1
