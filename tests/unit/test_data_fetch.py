"""fetch_cifar10: downloads from a local HTTP server, local copies, safe extraction."""

import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
import warnings
from pathlib import Path

import pytest

from resnet_repro.archive_writer import fake_batches, write_fake_cifar10, write_tar_gz
from resnet_repro.cifar import BATCH_DIR, DataError, md5_of
from resnet_repro.cli import main
from resnet_repro.download import Download
from resnet_repro.fetch import SOURCE_FILE, fetch_cifar10


class Server:
    """Serves one blob on 127.0.0.1 with Range support; `cut_first` cuts the first transfer
    halfway, `status` forces an error code."""

    def __init__(self, blob: bytes):
        self.blob, self.cut_first, self.status, self.requests = blob, False, 200, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(dict(self.headers))
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                body = server.blob[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first:
                    server.cut_first = False
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(fake_archive):
    s = Server(fake_archive.read_bytes())
    yield s
    s.httpd.shutdown()


def fetch(dest, retries=4, **kwargs):
    kwargs.setdefault("download", Download(progress=False, retries=retries, backoff=0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fetch_cifar10(dest, **kwargs)


def nothing_final(dest: Path) -> bool:
    return not (dest / "cifar-10-python.tar.gz").exists() and not (dest / BATCH_DIR).exists()


def test_full_download(server, fake_archive, tmp_path):
    batches = fetch(tmp_path, url=server.url, md5=md5_of(fake_archive))
    assert batches == tmp_path / BATCH_DIR
    with tarfile.open(fake_archive) as tar:
        for m in tar.getmembers():
            assert (tmp_path / m.name).read_bytes() == tar.extractfile(m).read()
    assert md5_of(tmp_path / "cifar-10-python.tar.gz") == md5_of(fake_archive)


def test_cut_transfer_resumes_with_range(server, fake_archive, tmp_path):
    server.cut_first = True
    fetch(tmp_path, url=server.url, md5=md5_of(fake_archive))
    assert len(server.requests) == 2
    half = len(server.blob) // 2
    assert server.requests[1]["Range"] == f"bytes={half}-"
    assert md5_of(tmp_path / "cifar-10-python.tar.gz") == md5_of(fake_archive)


def test_wrong_bytes_fail_md5_and_leave_no_file(server, fake_archive, tmp_path):
    server.blob = server.blob[:-10] + b"0123456789"
    with pytest.raises(DataError, match=r"md5 is .* expected"):
        fetch(tmp_path, url=server.url, md5=md5_of(fake_archive))
    assert nothing_final(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    server.status = 404
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(tmp_path, url=server.url, md5="0" * 32)
    assert len(server.requests) == 1
    assert nothing_final(tmp_path)


def test_server_errors_are_retried_then_reported(server, tmp_path):
    server.status = 503
    with pytest.raises(DataError, match="after 3 attempts"):
        fetch(tmp_path, url=server.url, md5="0" * 32, retries=2)
    assert len(server.requests) == 3


def test_local_archive_and_file_url(fake_archive, tmp_path):
    md5 = md5_of(fake_archive)
    fetch(tmp_path / "a", archive=fake_archive, md5=md5)
    fetch(tmp_path / "b", url=fake_archive.as_uri(), md5=md5)
    for d in ("a", "b"):
        assert (tmp_path / d / BATCH_DIR / "test_batch").is_file()


def test_non_official_md5_warns(fake_archive, tmp_path):
    with pytest.warns(UserWarning, match="not the official archive"):
        fetch_cifar10(
            tmp_path,
            archive=fake_archive,
            md5=md5_of(fake_archive),
            download=Download(progress=False),
        )


def test_official_md5_is_the_default_and_refuses_other_archives(fake_archive, tmp_path):
    with pytest.raises(DataError, match="expected c58f30108f718f92721af3b95e74349a"):
        fetch_cifar10(tmp_path, archive=fake_archive, download=Download(progress=False))
    assert nothing_final(tmp_path)


def test_second_call_does_nothing_and_says_so(fake_archive, tmp_path, caplog):
    md5 = md5_of(fake_archive)
    fetch(tmp_path, archive=fake_archive, md5=md5)
    stamp = (tmp_path / BATCH_DIR / "data_batch_1").stat().st_mtime_ns
    caplog.set_level("INFO")
    fetch(tmp_path, archive=fake_archive, md5=md5)
    assert "nothing to do" in caplog.text
    assert (tmp_path / BATCH_DIR / "data_batch_1").stat().st_mtime_ns == stamp


def test_truncated_archive(fake_archive, tmp_path):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(fake_archive.read_bytes()[:-2000])
    with pytest.raises(DataError, match="md5"):
        fetch(tmp_path / "d", archive=truncated, md5=md5_of(fake_archive))
    # Even named with its own md5, a truncated archive fails to extract, leaving no batches.
    with pytest.raises(DataError, match="truncated or corrupt"):
        fetch(tmp_path / "e", archive=truncated, md5=md5_of(truncated))
    assert not (tmp_path / "e" / BATCH_DIR).exists()


def evil_archive(tmp_path: Path, extra: dict | None = None, link: str | None = None) -> Path:
    members = fake_batches(train_per_batch=2, test_size=2, seed=0)
    members.update(extra or {})
    path = write_tar_gz(tmp_path / "evil.tar.gz", members)
    if link:
        with tarfile.open(path, "r:gz") as tar:
            infos = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(path, "w:gz") as tar:
            for m, data in infos:
                tar.addfile(m, io.BytesIO(data))
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra": {"../evil": b"x"}}, "outside the extraction folder"),
        ({"extra": {f"{BATCH_DIR}/../../evil": b"x"}}, "outside the extraction folder"),
        ({"extra": {"/tmp/evil": b"x"}}, "outside the extraction folder"),
        ({"extra": {f"{BATCH_DIR}/extra_file": b"x"}}, "unexpected member"),
        ({"link": f"{BATCH_DIR}/readme.html"}, "not a regular file"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, kwargs, message):
    archive = evil_archive(tmp_path, **kwargs)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=message):
        fetch(dest, archive=archive, md5=md5_of(archive))
    assert not (dest / BATCH_DIR).exists()
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in dest.iterdir()] == ["evil.tar.gz"]


def test_missing_member_is_refused(tmp_path):
    members = fake_batches(train_per_batch=2, test_size=2, seed=0)
    del members[f"{BATCH_DIR}/data_batch_3"]
    archive = write_tar_gz(tmp_path / "a.tar.gz", members)
    with pytest.raises(DataError, match="not a CIFAR-10 python archive: no member data_batch_3"):
        fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert not (tmp_path / "d" / BATCH_DIR).exists()


def test_refetch_replaces_stale_extraction(tmp_path):
    first = write_tar_gz(
        tmp_path / "1.tar.gz", fake_batches(train_per_batch=2, test_size=2, seed=1)
    )
    second = write_tar_gz(
        tmp_path / "2.tar.gz", fake_batches(train_per_batch=2, test_size=2, seed=2)
    )
    dest = tmp_path / "d"
    fetch(dest, archive=first, md5=md5_of(first))
    fetch(dest, archive=second, md5=md5_of(second))
    with tarfile.open(second) as tar:
        expected = tar.extractfile(f"{BATCH_DIR}/test_batch").read()
    assert (
        hashlib.md5((dest / BATCH_DIR / "test_batch").read_bytes()).digest()
        == hashlib.md5(expected).digest()
    )


def test_cli_fetch(fake_archive, tmp_path, capsys):
    md5 = md5_of(fake_archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            ["fetch", "--dest", str(tmp_path), "--archive", str(fake_archive), "--md5", md5]
        )
    assert code == 0
    assert f"CIFAR-10 ready at {tmp_path / BATCH_DIR}" in capsys.readouterr().out
    assert main(["fetch", "--dest", str(tmp_path / "x"), "--archive", str(fake_archive)]) == 1
    assert "expected c58f30108f718f92721af3b95e74349a" in capsys.readouterr().err


def test_real_archive_fetches_with_its_own_md5(real_archive, tmp_path):
    batches = fetch(tmp_path, archive=real_archive, md5="9eaacb75f1c66c7a3cbe2f330569ef44")
    assert sorted(p.name for p in batches.iterdir()) == sorted(
        [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "readme.html"]
    )


def test_a_second_fetch_into_the_same_folder_waits_for_the_first(fake_archive, tmp_path):
    """The second process blocks on the folder's lock while the first holds it, then finds
    the data in place and does nothing (one .part file, never two writers)."""
    import fcntl
    import os
    import select
    import subprocess
    import sys
    import time

    archive, md5 = fake_archive, md5_of(fake_archive)
    dest = tmp_path / "data"
    dest.mkdir()
    fd = os.open(dest, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a first fetch, in progress
    cmd = [sys.executable, "-m", "resnet_repro", "fetch", "--dest", str(dest)]
    second = subprocess.Popen(
        [*cmd, "--archive", str(archive), "--md5", md5], stdout=subprocess.PIPE, text=True
    )
    # Wait for the second to say it is waiting (however long a loaded machine takes to start
    # it), never for a fixed time.
    deadline = time.monotonic() + 300
    said = ""
    while "waiting for it to finish" not in said:
        assert second.poll() is None, f"the second fetch ended instead of waiting: {said}"
        assert time.monotonic() < deadline, f"the second fetch never waited: {said}"
        if select.select([second.stdout], [], [], 1.0)[0]:
            said += second.stdout.readline()
    assert not (dest / BATCH_DIR).exists()  # it waits, having written nothing
    os.close(fd)  # the first one ends
    assert second.wait(timeout=300) == 0 and (dest / BATCH_DIR).is_dir()


def test_an_archive_with_a_code_running_pickle_is_not_called_ready(tmp_path):
    """Its md5 matches the one given (the file is the one asked for), but its batch would run
    code: fetch decodes every batch with the restricted unpickler before calling it ready."""
    marker = tmp_path / "pwned"
    raw = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    archive = evil_archive(tmp_path, extra={f"{BATCH_DIR}/data_batch_2": raw})
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"data_batch_2.*global os.system is not allowed"):
        fetch(dest, archive=archive, md5=md5_of(archive), check=check_batches_of(archive))
    assert not marker.exists()
    assert not (dest / BATCH_DIR).exists()
    # The command line passes the check: no "ready" line, exit status 1.
    args = ["fetch", "--dest", str(dest), "--archive", str(archive), "--md5", md5_of(archive)]
    assert main(args) == 1
    assert not marker.exists() and not (dest / BATCH_DIR).exists()


def check_batches_of(archive):
    from resnet_repro.data import check_batches

    return lambda folder: check_batches(folder, name=str(archive))


def test_a_folder_the_fetch_stage_extracted_is_recorded_with_its_archives_md5(tmp_path, capsys):
    """The pipeline's own fetch stage, on a byte-faithful fake of the official layout
    (readme.html included): training from the folder records the archive's md5, as long as
    the data members are the ones extracted."""
    from resnet_repro.data import load_source

    archive = write_fake_cifar10(tmp_path / "a.tar.gz", train_per_batch=10, test_size=10, seed=3)
    with tarfile.open(archive) as tar:
        assert f"{BATCH_DIR}/readme.html" in tar.getnames()
    md5 = md5_of(archive)
    dest = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fetch", "--dest", str(dest), "--source", str(archive), "--md5", md5]) == 0
    cache = tmp_path / "cache"
    assert load_source(dest, cache_dir=cache).source_md5 == md5
    assert load_source(dest / BATCH_DIR, cache_dir=cache).source_md5 == md5
    batch = dest / BATCH_DIR / "data_batch_2"
    batch.write_bytes((dest / BATCH_DIR / "data_batch_3").read_bytes())
    assert load_source(dest, cache_dir=cache).source_md5 != md5


# What the fetch decides and records, line by line (each test kills a mutant of fetch.py).


def tar_of(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    """A tar.gz of the given entries in order; None makes a folder entry."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def small_members() -> list[tuple[str, bytes]]:
    return list(fake_batches(train_per_batch=2, test_size=2, seed=0).items())


def test_a_file_as_dest_is_refused_naming_it(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "f", archive=tmp_path / "f", md5="0" * 32)
    assert str(e.value) == f"{tmp_path / 'f'}: --dest is a file; name a folder to put CIFAR-10 in"


def test_dest_and_its_missing_parents_are_made(fake_archive, tmp_path):
    dest = tmp_path / "a" / "b"
    assert fetch(dest, archive=fake_archive, md5=md5_of(fake_archive)) == dest / BATCH_DIR


def test_the_warning_says_why(fake_archive, tmp_path):
    import resnet_repro.fetch as fetch_module

    md5 = md5_of(fake_archive).upper()  # md5s compare without case
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fetch_cifar10(tmp_path, archive=fake_archive, md5=md5, download=Download(progress=False))
    [warning] = caught
    assert Path(warning.filename) != Path(fetch_module.__file__)  # the caller's line
    assert str(warning.message) == (
        f"fetch_cifar10: md5 {md5.lower()} is not the official archive's "
        "(c58f30108f718f92721af3b95e74349a); results on this data are not comparable with the "
        "published tables"
    )


def test_what_is_in_place_and_what_was_done_is_logged(fake_archive, tmp_path, caplog):
    md5 = md5_of(fake_archive)
    caplog.set_level("INFO", logger="resnet_repro")
    fetch(tmp_path, archive=fake_archive, md5=md5)
    fetch(tmp_path, archive=fake_archive, md5=md5)
    batches = tmp_path / BATCH_DIR
    assert caplog.messages == [
        f"CIFAR-10 verified (md5 {md5}) and extracted to {batches}",
        f"CIFAR-10 already in place at {batches} (archive md5 {md5}): nothing to do",
    ]


def test_a_missing_file_url_is_a_missing_archive_not_a_retried_download(tmp_path):
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "d", url=missing.as_uri(), md5="0" * 32, retries=0)
    assert str(e.value) == f"{missing}: archive not found"


def test_a_url_without_a_file_name_saves_the_archive_under_the_official_one(
    server, fake_archive, tmp_path
):
    fetch(tmp_path, url=server.url.rsplit("/", 1)[0] + "/", md5=md5_of(fake_archive))
    assert md5_of(tmp_path / "cifar-10-python.tar.gz") == md5_of(fake_archive)


def test_an_archive_in_place_with_its_md5_is_not_downloaded_again(server, fake_archive, tmp_path):
    shutil.copyfile(fake_archive, tmp_path / "cifar-10-python.tar.gz")
    server.status = 404
    fetch(tmp_path, url=server.url, md5=md5_of(fake_archive))
    assert server.requests == []
    assert (tmp_path / BATCH_DIR / "test_batch").is_file()


def test_a_part_file_left_by_an_earlier_fetch_is_resumed(server, fake_archive, tmp_path):
    half = len(server.blob) // 2
    (tmp_path / "cifar-10-python.tar.gz.part").write_bytes(server.blob[:half])
    fetch(tmp_path, url=server.url, md5=md5_of(fake_archive))
    assert [r.get("Range") for r in server.requests] == [f"bytes={half}-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [BATCH_DIR, "cifar-10-python.tar.gz", SOURCE_FILE]
    )


def test_the_md5_error_names_the_local_archive_and_what_to_do(fake_archive, tmp_path):
    with pytest.raises(DataError) as e:
        fetch(tmp_path, archive=fake_archive, md5="0" * 32)
    assert str(e.value) == (
        f"{fake_archive}: md5 is {md5_of(fake_archive)}, expected {'0' * 32}. The file is "
        "corrupt or another archive; for a mirror with a different md5 pass md5=... (--md5) "
        "explicitly"
    )


def test_a_copy_cut_short_leaves_no_part_file_and_raises_its_own_error(
    fake_archive, tmp_path, monkeypatch
):
    def cut(src, dst):
        Path(dst).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", cut)
    with pytest.raises(KeyboardInterrupt):
        fetch(tmp_path, archive=fake_archive, md5=md5_of(fake_archive))
    assert list(tmp_path.iterdir()) == []

    def refused(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(shutil, "copyfile", refused)
    with pytest.raises(PermissionError):
        fetch(tmp_path, archive=fake_archive, md5=md5_of(fake_archive))


def test_the_official_archive_is_checked_member_by_member_and_recorded(tmp_path, monkeypatch):
    """With this archive's digests standing in for the official ones: each member's md5 is
    checked (no batch decoding: ``check`` is for other archives) and the record says
    official; a member that differs is refused, naming it."""
    import resnet_repro.fetch as fetch_module

    archive = tar_of(tmp_path / "a.tar.gz", small_members())
    with tarfile.open(archive) as tar:
        digests = {
            Path(m.name).name: hashlib.md5(tar.extractfile(m).read()).hexdigest() for m in tar
        }
    monkeypatch.setattr(fetch_module, "OFFICIAL_MD5", md5_of(archive))
    monkeypatch.setattr(fetch_module, "OFFICIAL_MEMBER_MD5", digests)

    def never(folder):
        raise AssertionError("the official archive's batches are checked by their md5s")

    fetch(tmp_path / "d", archive=archive, md5=md5_of(archive), check=never)
    record = json.loads((tmp_path / "d" / SOURCE_FILE).read_text())
    assert record == {
        "archive": "a.tar.gz",
        "archive_md5": md5_of(archive),
        "official": True,
        "member_md5": digests,
    }
    monkeypatch.setattr(fetch_module, "OFFICIAL_MEMBER_MD5", {**digests, "test_batch": "0" * 32})
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "e", archive=archive, md5=md5_of(archive), check=never)
    assert str(e.value) == (
        f"{tmp_path / 'e' / 'a.tar.gz'}: member test_batch has md5 {digests['test_batch']}, "
        f"expected {'0' * 32}"
    )


def test_extraction_checks_in_a_hidden_folder_beside_the_final_one(fake_archive, tmp_path):
    seen = []

    def check(folder):
        seen.append((folder.parent, folder.name.startswith(".extract-"), folder.stat().st_mode))

    dest = tmp_path / "d"
    fetch(dest, archive=fake_archive, md5=md5_of(fake_archive), check=check)
    assert seen[0][:2] == (dest, True)
    assert (dest / BATCH_DIR).stat().st_mode & 0o777 == 0o755  # others may read the data
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [BATCH_DIR, "cifar-10-python.tar.gz", SOURCE_FILE]
    )


def test_the_record_is_indented_json_of_every_members_md5(tmp_path):
    members = small_members()
    archive = tar_of(tmp_path / "a.tar.gz", members)
    fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    expected = {
        "archive": "a.tar.gz",
        "archive_md5": md5_of(archive),
        "official": False,
        "member_md5": {Path(n).name: hashlib.md5(b).hexdigest() for n, b in members},
    }
    assert (tmp_path / "d" / SOURCE_FILE).read_text() == json.dumps(expected, indent=2)


@pytest.mark.parametrize("prefix", ["", "./"])
def test_folder_entries_and_dot_slash_names_of_the_batch_folder_are_accepted(tmp_path, prefix):
    entries = [(f"{prefix}{BATCH_DIR}/", None)]
    entries += [(f"{prefix}{name}", data) for name, data in small_members()]
    archive = tar_of(tmp_path / "a.tar.gz", entries)
    batches = fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert sorted(p.name for p in batches.iterdir()) == sorted(
        Path(n).name for n, _ in small_members()
    )


def test_another_folder_inside_the_archive_is_refused(tmp_path):
    archive = tar_of(tmp_path / "a.tar.gz", [*small_members(), (f"{BATCH_DIR}/sub", None)])
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert str(e.value) == (
        f"{tmp_path / 'd' / 'a.tar.gz'}: member '{BATCH_DIR}/sub' is not a regular file "
        "(link or device)"
    )


def test_a_member_twice_is_refused_naming_it(tmp_path):
    members = small_members()
    archive = tar_of(tmp_path / "a.tar.gz", [*members, members[0]])
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert str(e.value) == f"{tmp_path / 'd' / 'a.tar.gz'}: member {members[0][0]!r} appears twice"


def test_the_missing_members_error_names_each_and_what_to_check(tmp_path):
    members = [(n, b) for n, b in small_members() if not n.endswith(("_1", "_2"))]
    archive = tar_of(tmp_path / "a.tar.gz", members)
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert str(e.value) == (
        f"{tmp_path / 'd' / 'a.tar.gz'}: not a CIFAR-10 python archive: no member "
        "data_batch_1, data_batch_2 (its md5 matched the one given, so the file is the one "
        "asked for: check the --md5 and --source you passed)"
    )


@pytest.mark.parametrize("cut", ["head", "tail"])
def test_a_damaged_archive_is_named_in_the_error(tmp_path, cut):
    """Cut at its start, the archive fails to open; cut near its end, it fails while its
    members are listed: either way the error names the archive."""
    whole = tar_of(tmp_path / "whole.tar.gz", small_members()).read_bytes()
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(whole[:20] if cut == "head" else whole[: len(whole) - 200])
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "d", archive=archive, md5=md5_of(archive))
    assert str(e.value).startswith(
        f"{tmp_path / 'd' / 'a.tar.gz'}: archive is truncated or corrupt"
    )


def test_a_header_damaged_after_the_batches_is_named_in_the_error(tmp_path, bad_header_tar):
    with pytest.raises(DataError) as e:
        fetch(tmp_path, archive=bad_header_tar, md5=md5_of(bad_header_tar))
    assert (
        str(e.value) == f"{tmp_path / 'bad.tar'}: archive is truncated or corrupt (invalid header)"
    )
