"""Fetch a MovieLens release into a local data root, so that nothing half-done is ever taken for data.

A release is downloaded into a uniquely named temporary file in the root, checked against an md5 (one
pinned by the caller, else the one GroupLens publishes beside the zip), unpacked into a uniquely named
temporary folder in the root, and only then moved to ``root / release.folder``. Every failure removes
the temporaries, so a later run finds either the complete folder or nothing, and retries.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

from mfrec.data.releases import Release
from mfrec.errors import DataError

#: Seconds a connection may stay silent before the download is given up.
TIMEOUT = 60.0
_CHUNK = 1 << 16
_USER_AGENT = "mfrec-data/0.1 (Python urllib)"
_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_BSD_LINE = re.compile(r"MD5 ?\((?P<name>.+)\) ?= ?(?P<digest>[0-9a-fA-F]{32})")  # GroupLens (BSD `md5`)
_GNU_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{32}) [ *]?(?P<name>.+)")  # md5sum


def default_data_root() -> Path:
    """``$MFREC_DATA_DIR`` if set, else ``~/.cache/mfrec``: one shared place, so each release is fetched once."""
    env = os.environ.get("MFREC_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mfrec"


def missing_files(release: Release, root: Path) -> list[str]:
    """The expected files of ``release`` that ``root / release.folder`` lacks (all of them if it is absent)."""
    folder = Path(root).expanduser() / release.folder
    return [name for name in release.expected_files if not (folder / name).is_file()]


def is_present(release: Release, root: Path) -> bool:
    """Whether ``release`` is complete under ``root``, i.e. ``ensure_release`` would download nothing."""
    return not missing_files(release, root)


def ensure_release(
    release: Release,
    root: Path,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Return ``root / release.folder``, downloading, verifying and unpacking the release first if needed.

    ``url`` replaces GroupLens' address (a mirror, a ``file://`` copy); ``md5`` pins the zip's checksum,
    which otherwise comes from ``<url>.md5``. Raises ``DataError`` saying what failed and what to do;
    on any failure nothing is left in ``root`` that a later call would mistake for the release.
    """
    root = Path(root).expanduser()
    target = root / release.folder
    pinned = _parse_pinned_md5(md5) if md5 is not None else None
    missing = missing_files(release, root)
    if not missing:
        return target
    if target.exists() or target.is_symlink():
        # Only a complete folder is ever moved into place, so this one was made or changed by hand:
        # replacing it could destroy someone's files.
        raise DataError(
            f"{target} exists but lacks {', '.join(missing)}; remove it (or complete it) and run again"
        )
    url = url or release.url
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the data root {root}: {error}; choose another (--root, $MFREC_DATA_DIR)"
        ) from error
    expected = pinned if pinned is not None else _published_md5(url)

    report = _Reporter(progress)
    report.start(f"downloading {release.name} from {url}")
    archive = _download(url, root, release, report)
    try:
        actual = _md5_of(archive)
        if actual != expected:
            source = "the md5 given" if pinned is not None else f"the md5 published at {url}.md5"
            raise DataError(
                f"the download of {url} does not match {source}: expected {expected}, got {actual}; "
                "the transfer may be corrupt or the file changed upstream, so run again, "
                "or pin the checksum you trust with --md5 (md5= in Python)"
            )
        folder = _extract(archive, root, release, url)
    finally:
        archive.unlink(missing_ok=True)
    report.finish(f"{release.name} is ready in {folder}")
    return folder


# -- checksums ---------------------------------------------------------------------------------------


def _parse_pinned_md5(md5: str) -> str:
    digest = md5.strip().lower()
    if not _HEX_MD5.fullmatch(digest):
        raise DataError(f"md5 '{md5}' is not an md5 checksum: expected 32 hexadecimal digits")
    return digest


def parse_md5_file(text: str, filename: str) -> str | None:
    """The digest for ``filename`` in an md5 file, whichever common format it is in; None if there is none.

    Accepts GroupLens' BSD format (``MD5 (ml-1m.zip) = c4d9...``), ``md5sum``'s (``c4d9...  ml-1m.zip``)
    and a bare digest. A line naming ``filename`` wins; a file holding a single digest gives that digest
    whatever it names, since a mirror may serve the zip under another name.
    """
    named: list[str] = []
    digests: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _BSD_LINE.fullmatch(line) or _GNU_LINE.fullmatch(line)
        if match:
            name = match["name"].strip().lstrip("*")
            digest = match["digest"].lower()
            digests.append(digest)
            if name == filename or name.rsplit("/", 1)[-1] == filename:
                named.append(digest)
        elif _HEX_MD5.fullmatch(line):
            digests.append(line.lower())
    if named:
        return named[0]
    if len(set(digests)) == 1:
        return digests[0]
    return None


def _published_md5(url: str) -> str:
    md5_url = f"{url}.md5"
    try:
        with _open(md5_url) as response:
            text = response.read(64 * 1024).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        raise DataError(
            f"could not fetch the checksum {md5_url}: HTTP {error.code} {error.reason}; "
            "pass the zip's md5 with --md5 HEX (md5= in Python) to verify against a checksum you trust"
        ) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DataError(
            f"could not fetch the checksum {md5_url}: {_reason(error)}; check the URL and your network, "
            "or pass the zip's md5 with --md5 HEX (md5= in Python)"
        ) from error
    filename = url.rstrip("/").rsplit("/", 1)[-1]
    digest = parse_md5_file(text, filename)
    if digest is None:
        raise DataError(
            f"{md5_url} holds no md5 for {filename}; pass the zip's md5 with --md5 HEX (md5= in Python)"
        )
    return digest


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- download ----------------------------------------------------------------------------------------


def _open(url: str):  # -> a response usable as a context manager
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 - URLs come from the user or the release table


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return f"{error.reason}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _download(url: str, root: Path, release: Release, report: _Reporter) -> Path:
    """Stream ``url`` into a fresh temporary file in ``root``; remove it again on any failure."""
    handle, name = tempfile.mkstemp(prefix=f".{release.name}.", suffix=".zip.part", dir=root)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            try:
                with _open(url) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    report.begin_transfer(total)
                    received = 0
                    while chunk := response.read(_CHUNK):
                        file.write(chunk)
                        received += len(chunk)
                        report.advance(received)
                    report.end_transfer()
            except urllib.error.HTTPError as error:
                raise DataError(
                    f"could not download {url}: HTTP {error.code} {error.reason}; "
                    "check the URL (--url) and try again"
                ) from error
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                raise DataError(
                    f"the download of {url} failed: {_reason(error)}; check your network and run again "
                    "(nothing was kept)"
                ) from error
        if total is not None and received != total:
            raise DataError(
                f"the download of {url} was cut short: got {received} of {total} bytes; "
                "check your network and run again (nothing was kept)"
            )
        return path
    except BaseException:
        report.abort()
        path.unlink(missing_ok=True)
        raise


# -- extraction --------------------------------------------------------------------------------------


def _member_parts(name: str) -> list[str]:
    """The path components of a zip member, refusing any that could land outside the folder it unpacks to."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified):
        raise DataError(f"refusing zip member '{name}': it has an absolute path")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DataError(f"refusing zip member '{name}': its path leaves the folder it unpacks to")
    return parts


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _unpack(archive: zipfile.ZipFile, into: Path) -> None:
    """Unpack every member of ``archive`` under ``into``, checking each real destination stays inside."""
    base = os.path.realpath(into)
    members = [(info, _member_parts(info.filename)) for info in archive.infolist()]  # refuse before writing
    for info, parts in members:
        if not parts:
            continue
        dest = os.path.join(base, *parts)
        # realpath follows links made by earlier members, so a path through one is judged by where it lands
        if not _inside(os.path.realpath(dest), base):
            raise DataError(f"refusing zip member '{info.filename}': it lands outside the folder it unpacks to")
        if info.is_dir():
            os.makedirs(dest, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not _inside(os.path.realpath(os.path.dirname(dest)), base):
            raise DataError(f"refusing zip member '{info.filename}': it lands outside the folder it unpacks to")
        if _is_symlink(info):
            link = archive.read(info).decode("utf-8", errors="replace")
            if os.path.isabs(link) or not _inside(os.path.realpath(os.path.join(os.path.dirname(dest), link)), base):
                raise DataError(f"refusing zip member '{info.filename}': it links to '{link}', outside the release")
            os.symlink(link, dest)
            continue
        with archive.open(info) as source, open(dest, "wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)


def _check_links(folder: Path, url: str) -> None:
    """Refuse links in the unpacked release that point outside it (later members can redirect earlier links)."""
    base = os.path.realpath(folder)
    for directory, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), base):
                member = os.path.relpath(path, os.path.dirname(folder))
                raise DataError(f"refusing zip member '{member}' from {url}: it links outside the release")


def _extract(archive_path: Path, root: Path, release: Release, url: str) -> Path:
    """Unpack into a temporary folder in ``root``; move ``release.folder`` into place only when complete."""
    staging = Path(tempfile.mkdtemp(prefix=f".{release.name}.", suffix=".part", dir=root))
    target = root / release.folder
    try:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                _unpack(archive, staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
            raise DataError(f"{url} is not a readable zip ({error}); check the URL (--url)") from error
        except OSError as error:
            raise DataError(f"could not unpack {url} into {root}: {error}; check free space and permissions") from error
        unpacked = staging / release.folder
        lacking = [name for name in release.expected_files if not (unpacked / name).is_file()]
        if lacking:
            raise DataError(
                f"the zip from {url} lacks {', '.join(f'{release.folder}/{name}' for name in lacking)}; "
                f"is it the {release.name} release? check the URL (--url)"
            )
        _check_links(unpacked, url)
        try:
            os.rename(unpacked, target)
        except OSError as error:
            if is_present(release, root):  # another process finished first: keep its copy
                return target
            raise DataError(f"could not move the unpacked release to {target}: {error}") from error
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- progress ----------------------------------------------------------------------------------------


class _Reporter:
    """A progress bar on an interactive stderr; one line at the start and at the end otherwise (logs, CI)."""

    def __init__(self, progress: bool, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.bar = progress and _isatty(self.stream)
        self.total: int | None = None
        self.received = 0
        self.shown_at = 0.0
        self.drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def start(self, message: str) -> None:
        self._write(f"{message}\n")

    def begin_transfer(self, total: int | None) -> None:
        self.total = total

    def advance(self, received: int) -> None:
        self.received = received
        now = time.monotonic()
        if self.bar and now - self.shown_at >= 0.1:
            self.shown_at = now
            self._draw()

    def _draw(self) -> None:
        done = f"{self.received / 1e6:7.1f} MB"
        if self.total:
            fraction = min(self.received / self.total, 1.0)
            filled = int(fraction * 30)
            line = f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {done} of {self.total / 1e6:.1f} MB"
        else:
            line = f"\r{done}"
        self._write(line)
        self.drawn = True

    def end_transfer(self) -> None:
        if self.bar:
            self._draw()
            self._write("\n")
            self.drawn = False

    def abort(self) -> None:
        if self.drawn:
            self._write("\n")
            self.drawn = False

    def finish(self, message: str) -> None:
        self._write(f"{message}\n")


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
