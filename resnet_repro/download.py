"""An HTTP(S) download into a ``.part`` file: resumed with Range requests where a previous
attempt left bytes, retried with exponential backoff on errors that may pass, refused at once on
those that will not. What the bytes are is ``fetch``'s to check (their md5)."""

from __future__ import annotations

import errno
import http.client
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError

from tqdm import tqdm

from resnet_repro.cifar import CHUNK, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Download:
    """How a fetch downloads: ``retries`` more attempts after the first, waiting ``backoff``
    seconds before the second and twice as long before each next one; ``timeout`` seconds for
    the server to answer a read; a progress bar on stderr when ``progress``."""

    progress: bool = True
    retries: int = 4
    backoff: float = 1.0
    timeout: float = 60.0

    def __call__(self, url: str, part: Path) -> None:
        """Download ``url`` into ``part``, resuming what a previous attempt left there."""
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=self.timeout
                ) as resp:
                    if have and resp.status != 206:
                        have = 0  # the server ignored the Range header: start over
                    length = resp.headers.get("Content-Length")
                    total = have + int(length) if length is not None else None
                    with (
                        open(part, "ab" if have else "wb") as f,
                        tqdm(
                            total=total,
                            initial=have,
                            unit="B",
                            unit_scale=True,
                            disable=not self.progress,
                            desc=part.name.removesuffix(".part"),
                        ) as bar,
                    ):
                        while chunk := resp.read(CHUNK):
                            f.write(chunk)
                            bar.update(len(chunk))
                if total is not None and part.stat().st_size != total:
                    raise http.client.IncompleteRead(b"", total - part.stat().st_size)
                return
            except HTTPError as e:
                if e.code == 416:  # the part file is not a prefix of the resource: start over
                    part.unlink(missing_ok=True)
                    error = e
                    continue
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    raise DataError(f"{url}: download failed: HTTP {e.code} {e.reason}") from e
                error = e
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DataError(f"{part}: disk full while downloading {url}") from e
                error = e
            except (http.client.HTTPException, URLError) as e:
                error = e
            log.warning(
                "download of %s interrupted (%s); attempt %d of %d",
                url,
                error,
                attempt + 1,
                self.retries + 1,
            )
        raise DataError(f"{url}: download failed after {self.retries + 1} attempts: {error}")
