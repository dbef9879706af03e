"""Which archive the data on disk came from: a downloaded (``download.py``) or copied archive
checked against its md5, extracted safely, and recorded with each member's md5. Also the safe
reading of a CIFAR tar that loading (``data.py``) shares.

Guarantees:

* Nothing corrupt ever sits under a final name: downloads and copies go to a ``.part`` file
  beside the destination, are md5-checked, then moved with ``os.replace``; extraction goes to a
  temporary folder that replaces the final one only when every member checked out.
* Extraction accepts only the expected member names, as regular files; links, devices,
  absolute paths and ``..`` are refused.
* Every problem raises ``DataError`` naming the file and what was wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from resnet_repro.atomic import write_bytes_atomic
from resnet_repro.cifar import (
    BATCH_DIR,
    CHUNK,
    DATA_MEMBERS,
    OFFICIAL_MD5,
    OFFICIAL_MEMBER_MD5,
    OFFICIAL_URL,
    OPTIONAL_MEMBERS,
    DataError,
    md5_of,
)
from resnet_repro.download import Download

log = logging.getLogger(__name__)

SOURCE_FILE = f"{BATCH_DIR}.source.json"  # beside the batches: which archive they came from


def fetch_cifar10(
    dest: str | os.PathLike,
    *,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    archive: str | os.PathLike | None = None,
    download: Download = Download(),
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Put a verified, extracted CIFAR-10 under ``dest`` and return ``dest/cifar-10-batches-py``.

    ``check`` (e.g. ``data.check_batches``) is called on the extracted batches of an archive
    other than the official one before they take their final place: a matching md5 says the
    file is the one asked for, not that it holds CIFAR data (the command line passes it).

    The archive comes from ``url`` (http(s), resumed with Range requests and retried with
    exponential backoff, or ``file://``) or from a local ``archive`` copy. It must match ``md5``;
    an md5 other than the official one is allowed only when named explicitly and draws a
    warning. A second call with everything in place does no work.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: --dest is a file; name a folder to put CIFAR-10 in")
    dest.mkdir(parents=True, exist_ok=True)
    md5 = md5.lower()
    if md5 != OFFICIAL_MD5:
        warnings.warn(
            f"fetch_cifar10: md5 {md5} is not the official archive's ({OFFICIAL_MD5}); "
            "results on this data are not comparable with the published tables",
            stacklevel=2,
        )
    with _fetch_lock(dest):
        return _fetch(dest, url, md5, archive, download, check)


@contextlib.contextmanager
def _fetch_lock(dest: Path) -> Iterator[None]:
    """One fetch at a time into ``dest``: a second waits, then finds the data in place, instead
    of writing the same ``.part`` file at once. The lock is on the folder itself, so nothing is
    left in it, and the system releases it when the process dies."""
    fd = os.open(dest, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another fetch is writing %s; waiting for it to finish", dest)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fetch(
    dest: Path,
    url: str,
    md5: str,
    archive: str | os.PathLike | None,
    download: Download,
    check: Callable[[Path], None] | None,
) -> Path:
    batches = dest / BATCH_DIR
    source = read_source(dest)
    if source.get("archive_md5") == md5 and all((batches / m).is_file() for m in DATA_MEMBERS):
        log.info("CIFAR-10 already in place at %s (archive md5 %s): nothing to do", batches, md5)
        return batches

    if archive is None and url.startswith("file://"):
        archive = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    name = Path(archive).name if archive is not None else Path(urllib.parse.urlparse(url).path).name
    final = dest / (name or "cifar-10-python.tar.gz")
    if not (final.is_file() and md5_of(final) == md5):
        part = final.with_name(final.name + ".part")
        if archive is not None:
            _copy(Path(archive), part)
        else:
            download(url, part)
        got = md5_of(part)
        if got != md5:
            part.unlink()
            raise DataError(
                f"{archive or url}: md5 is {got}, expected {md5}. The file is corrupt or another "
                "archive; for a mirror with a different md5 pass md5=... (--md5) explicitly"
            )
        os.replace(part, final)
    _extract(final, dest, official=md5 == OFFICIAL_MD5, archive_md5=md5, check=check)
    log.info("CIFAR-10 verified (md5 %s) and extracted to %s", md5, batches)
    return batches


def _copy(src: Path, part: Path) -> None:
    if not src.is_file():
        raise DataError(f"{src}: archive not found")
    try:
        shutil.copyfile(src, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def check_member(member: tarfile.TarInfo, archive: Path) -> str | None:
    """The member's file name if it is an expected regular file; None for the folder itself;
    DataError for anything else."""
    name = member.name.removeprefix("./")
    if name == BATCH_DIR and member.isdir():  # tarfile strips a folder's trailing "/"
        return None
    base = name.removeprefix(f"{BATCH_DIR}/")
    if name.startswith("/") or ".." in Path(name).parts:
        raise DataError(f"{archive}: member {member.name!r} points outside the extraction folder")
    if not member.isreg():
        raise DataError(f"{archive}: member {member.name!r} is not a regular file (link or device)")
    if not name.startswith(f"{BATCH_DIR}/") or base not in DATA_MEMBERS + OPTIONAL_MEMBERS:
        raise DataError(f"{archive}: unexpected member {member.name!r}")
    return base


def _extract(
    archive: Path,
    dest: Path,
    *,
    official: bool,
    archive_md5: str,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Check every member, extract into a temporary folder, run ``check`` on it (an archive
    other than the official one), then move it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        member_md5: dict[str, str] = {}
        with open_tar(archive) as tar:
            for member in tar_members(tar, archive):
                base = check_member(member, archive)
                if base is None:
                    continue
                if base in member_md5:
                    raise DataError(f"{archive}: member {member.name!r} appears twice")
                digest = hashlib.md5()
                with (
                    reading(archive),
                    tar.extractfile(member) as src,
                    open(tmp / base, "wb") as out,
                ):
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                member_md5[base] = digest.hexdigest()
        missing = [m for m in DATA_MEMBERS if m not in member_md5]
        if missing:
            raise DataError(
                f"{archive}: not a CIFAR-10 python archive: no member {', '.join(missing)} "
                "(its md5 matched the one given, so the file is the one asked for: check the "
                "--md5 and --source you passed)"
            )
        if official:
            for name, expected in OFFICIAL_MEMBER_MD5.items():
                if member_md5[name] != expected:
                    raise DataError(
                        f"{archive}: member {name} has md5 {member_md5[name]}, expected {expected}"
                    )
        else:
            if check is not None:
                check(tmp)
        final = dest / BATCH_DIR
        (dest / SOURCE_FILE).unlink(missing_ok=True)
        if final.exists():  # with the record gone, a removal cut short is redone next time
            shutil.rmtree(final)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        os.replace(tmp, final)
        source = {
            "archive": archive.name,
            "archive_md5": archive_md5,
            "official": official,
            "member_md5": member_md5,
        }
        write_bytes_atomic(dest / SOURCE_FILE, json.dumps(source, indent=2).encode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def reading(archive: Path) -> Iterator[None]:
    """Turn the many ways a damaged gzip/tar fails into one DataError."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{archive}: archive is truncated or corrupt ({e})") from e


def open_tar(archive: Path) -> tarfile.TarFile:
    with reading(archive):
        return tarfile.open(archive)  # any compression


def tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    with reading(archive):
        yield from tar


def read_source(dest: Path) -> dict:
    try:
        return json.loads((dest / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
