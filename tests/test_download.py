"""ensure_release and mfrec-data against a local HTTP server: verified downloads, and nothing half-done kept."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mfrec.data import download as download_module
from mfrec.data.cli import main
from mfrec.data.download import ensure_release, is_present, parse_md5_file
from mfrec.data.releases import RELEASES, Release
from mfrec.errors import DataError

ML_1M = RELEASES["ml-1m"]
ML_100K = RELEASES["ml-100k"]
ML_10M = RELEASES["ml-10m"]  # its zip unpacks to ml-10M100K, not ml-10m
ML_SMALL = RELEASES["ml-latest-small"]

SAMPLE_FILES: dict[str, dict[str, bytes]] = {
    "ml-1m": {
        "ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n",
        "movies.dat": b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation\n",
        "README": b"ml-1m sample\n",
    },
    "ml-100k": {
        "u.data": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        "u.item": "242|Kolya (1996)|24-Jan-1997||\n302|L.A. Confidential (1997)|01-Jan-1997||\n".encode("latin-1"),
        "u1.base": b"196\t242\t3\t881250949\n",
        "u1.test": b"186\t302\t3\t891717742\n",
    },
    "ml-10m": {
        "ratings.dat": b"1::122::5::838985046\n",
        "movies.dat": b"122::Boomerang (1992)::Comedy|Romance\n",
    },
    "ml-latest-small": {
        "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
        "movies.csv": b"movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n",
        "links.csv": b"movieId,imdbId,tmdbId\n1,0114709,862\n",
    },
}


def make_zip(release: Release, extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """A small zip in ``release``'s layout: a directory entry, then its files under ``release.folder/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{release.folder}/", b"")
        for name, content in SAMPLE_FILES[release.name].items():
            if name not in drop:
                archive.writestr(f"{release.folder}/{name}", content)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def grouplens_md5(name: str, data: bytes) -> bytes:
    return f"MD5 ({name}) = {md5_hex(data)}\n".encode()


# -- a local server ----------------------------------------------------------------------------------


@dataclass
class Server:
    """Serves ``routes`` (path -> body, or a handler function) on 127.0.0.1 and records the paths asked for."""

    base: str = ""
    routes: dict[str, bytes | Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def publish(self, release: Release, data: bytes, md5: bytes | None = None) -> str:
        """Serve ``data`` as ``<release>.zip`` with its GroupLens-style md5 beside it (or ``md5``); return the zip's URL."""
        name = f"{release.name}.zip"
        self.routes[f"/{name}"] = data
        self.routes[f"/{name}.md5"] = md5 if md5 is not None else grouplens_md5(name, data)
        return self.url(name)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(self.path)
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
            elif callable(route):
                route(self)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung test fails in seconds, not after the minute a real download may wait."""
    monkeypatch.setattr(download_module, "TIMEOUT", 5.0)


def truncated(data: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """A handler that promises all of ``data`` but sends half of it, then closes the connection."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return handle


def reset(data: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """A handler that sends part of ``data`` and then resets the connection (RST, not an orderly close)."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[:100])
        handler.wfile.flush()
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True

    return handle


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- ensure_release ----------------------------------------------------------------------------------


@pytest.mark.parametrize("release", [ML_1M, ML_100K, ML_10M, ML_SMALL], ids=lambda r: r.name)
def test_downloads_verifies_and_unpacks_each_layout(server: Server, tmp_path: Path, release: Release) -> None:
    url = server.publish(release, make_zip(release))
    root = tmp_path / "data"

    folder = ensure_release(release, root, url=url, progress=False)

    assert folder == root / release.folder
    for name, content in SAMPLE_FILES[release.name].items():
        assert (folder / name).read_bytes() == content
    assert server.requests == [f"/{release.name}.zip.md5", f"/{release.name}.zip"]
    assert [p.name for p in root.iterdir()] == [release.folder]  # no zip, no temporaries


def test_present_release_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M))
    ensure_release(ML_1M, tmp_path, url=url, progress=False)
    server.requests.clear()

    assert ensure_release(ML_1M, tmp_path, url=url, progress=False) == tmp_path / "ml-1m"
    assert ensure_release(ML_1M, tmp_path, progress=False) == tmp_path / "ml-1m"  # not even GroupLens
    assert server.requests == []


def test_bad_published_md5_is_refused_and_nothing_is_kept(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M), md5=grouplens_md5("ml-1m.zip", b"something else"))

    with pytest.raises(DataError, match=r"does not match the md5 published at .*ml-1m\.zip\.md5") as error:
        ensure_release(ML_1M, tmp_path, url=url, progress=False)

    assert url in str(error.value) and "--md5" in str(error.value)
    assert list(tmp_path.iterdir()) == []
    assert not is_present(ML_1M, tmp_path)


def test_pinned_md5_overrides_the_published_one(server: Server, tmp_path: Path) -> None:
    data = make_zip(ML_1M)
    url = server.publish(ML_1M, data, md5=grouplens_md5("ml-1m.zip", b"stale"))

    with pytest.raises(DataError, match="does not match the md5 given"):
        ensure_release(ML_1M, tmp_path, url=url, md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []

    server.requests.clear()
    folder = ensure_release(ML_1M, tmp_path, url=url, md5=md5_hex(data).upper(), progress=False)
    assert is_present(ML_1M, tmp_path) and folder == tmp_path / "ml-1m"
    assert server.requests == ["/ml-1m.zip"]  # the published md5 is not even fetched


def test_malformed_pinned_md5_is_refused_before_any_request(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M))
    with pytest.raises(DataError, match="not an md5 checksum"):
        ensure_release(ML_1M, tmp_path, url=url, md5="c4d9", progress=False)
    assert server.requests == []


@pytest.mark.parametrize("md5_text", [
    "MD5 (ml-1m.zip) = {digest}\n",
    "{digest}  ml-1m.zip\n",
    "{digest} *ml-1m.zip\n",
    "{digest}\n",
    "{other}  ml-100k.zip\n{digest}  ml-1m.zip\n",
])
def test_published_md5_formats(server: Server, tmp_path: Path, md5_text: str) -> None:
    data = make_zip(ML_1M)
    url = server.publish(ML_1M, data, md5=md5_text.format(digest=md5_hex(data), other="f" * 32).encode())
    assert ensure_release(ML_1M, tmp_path, url=url, progress=False) == tmp_path / "ml-1m"


def test_parse_md5_file() -> None:
    digest = "c4d9eecfca2ab87c1945afe126590906"
    assert parse_md5_file(f"MD5 (ml-1m.zip) = {digest.upper()}", "ml-1m.zip") == digest
    assert parse_md5_file(f"MD5 (elsewhere.zip) = {digest}", "mirror.zip") == digest  # one digest: trusted
    assert parse_md5_file(f"{'a' * 32}  a.zip\n{'b' * 32}  b.zip\n", "c.zip") is None  # ambiguous
    assert parse_md5_file("<html>Not here</html>", "ml-1m.zip") is None


def test_md5_without_a_digest_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M), md5=b"<html>moved</html>")
    with pytest.raises(DataError, match=r"holds no md5 for ml-1m\.zip.*--md5"):
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_md5_is_an_error_unless_one_is_given(server: Server, tmp_path: Path) -> None:
    data = make_zip(ML_1M)
    url = server.publish(ML_1M, data)
    del server.routes["/ml-1m.zip.md5"]

    with pytest.raises(DataError, match=r"ml-1m\.zip\.md5: HTTP 404.*--md5 HEX") :
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert "/ml-1m.zip" not in server.requests  # nothing downloaded that could not be verified

    assert ensure_release(ML_1M, tmp_path, url=url, md5=md5_hex(data), progress=False) == tmp_path / "ml-1m"


def test_http_error_on_the_zip_names_the_url(server: Server, tmp_path: Path) -> None:
    url = server.url("nowhere.zip")
    with pytest.raises(DataError, match=r"could not download .*nowhere\.zip: HTTP 404.*--url"):
        ensure_release(ML_1M, tmp_path, url=url, md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DataError, match=rf"127\.0\.0\.1:{port}/ml-1m\.zip.*check your network"):
        ensure_release(ML_1M, tmp_path, url=f"http://127.0.0.1:{port}/ml-1m.zip", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [truncated, reset], ids=["truncated", "reset"])
def test_interrupted_transfer_keeps_nothing_and_a_retry_succeeds(
    server: Server, tmp_path: Path, failure: Callable[[bytes], Callable[[BaseHTTPRequestHandler], None]]
) -> None:
    data = make_zip(ML_1M, extra={"ml-1m/padding.bin": bytes(range(256)) * 64})
    url = server.publish(ML_1M, data)
    server.routes["/ml-1m.zip"] = failure(data)

    with pytest.raises(DataError, match=r"ml-1m\.zip.*(cut short|failed).*run again") as error:
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    if failure is truncated:
        assert f"got {len(data) // 2} of {len(data)} bytes" in str(error.value)
    assert list(tmp_path.iterdir()) == []

    server.routes["/ml-1m.zip"] = data
    assert ensure_release(ML_1M, tmp_path, url=url, progress=False) == tmp_path / "ml-1m"
    assert (tmp_path / "ml-1m" / "ratings.dat").read_bytes() == SAMPLE_FILES["ml-1m"]["ratings.dat"]


@pytest.mark.parametrize("member", ["../evil.txt", "ml-1m/../../evil.txt", "/tmp/mfrec-evil.txt", "C:/evil.txt"])
def test_hostile_member_paths_are_refused(server: Server, tmp_path: Path, member: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    url = server.publish(ML_1M, make_zip(ML_1M, extra={member: b"gotcha"}))

    with pytest.raises(DataError, match=f"refusing zip member '{member}'"):
        ensure_release(ML_1M, root, url=url, progress=False)

    assert files_under(tmp_path) == ["data"]  # nothing inside root, nothing beside it
    assert not Path("/tmp/mfrec-evil.txt").exists()


def symlink_zip(release: Release, links: dict[str, str], after: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO(make_zip(release))
    with zipfile.ZipFile(buffer, "a") as archive:
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix, so the mode bits count
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
        for name, content in (after or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(("links", "after", "refused"), [
    ({"ml-1m/escape": "../../outside"}, {}, "ml-1m/escape"),  # leaves the unpack folder at once
    ({"ml-1m/escape": "/etc"}, {}, "ml-1m/escape"),  # absolute
    ({"ml-1m/up": ".."}, {}, "ml-1m/up"),  # inside the unpack folder, outside the release
    # 'a' -> 'b/x/../..' is 'ml-1m' while 'b' is absent; 'b' -> '..' then makes 'a' the data root itself,
    # so a file written through 'a' would land beside the release: refused before it is written.
    ({"ml-1m/a": "b/x/../..", "ml-1m/b": ".."}, {"ml-1m/a/evil.txt": b"gotcha"}, "ml-1m/a/evil.txt"),
    # 'b' -> '.' makes 'a' the unpack folder, outside the release: refused when the release is checked
    ({"ml-1m/a": "b/x/../..", "ml-1m/b": "."}, {}, "ml-1m/a"),
])
def test_symlinks_out_of_the_release_are_refused(
    server: Server, tmp_path: Path, links: dict[str, str], after: dict[str, bytes], refused: str
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    url = server.publish(ML_1M, symlink_zip(ML_1M, links, after))

    with pytest.raises(DataError, match=f"refusing zip member '{refused}'"):
        ensure_release(ML_1M, root, url=url, progress=False)
    assert files_under(tmp_path) == ["data"]


def test_symlink_inside_the_release_is_kept(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, symlink_zip(ML_1M, {"ml-1m/latest": "ratings.dat"}))
    folder = ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert (folder / "latest").is_symlink()
    assert (folder / "latest").read_bytes() == SAMPLE_FILES["ml-1m"]["ratings.dat"]


def test_zip_of_another_release_is_refused(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M, drop=("movies.dat",)))
    with pytest.raises(DataError, match=r"lacks ml-1m/movies\.dat; is it the ml-1m release\?"):
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_not_a_zip_is_refused(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, b"<html>a captive portal</html>")
    with pytest.raises(DataError, match="is not a readable zip"):
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_hand_made_incomplete_folder_is_not_overwritten(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_bytes(b"mine\n")
    url = server.publish(ML_1M, make_zip(ML_1M))

    with pytest.raises(DataError, match=r"exists but lacks movies\.dat; remove it"):
        ensure_release(ML_1M, tmp_path, url=url, progress=False)
    assert (tmp_path / "ml-1m" / "ratings.dat").read_bytes() == b"mine\n"
    assert server.requests == []


def test_concurrent_calls_leave_one_complete_copy(server: Server, tmp_path: Path) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M))
    results: list[Path | BaseException] = []

    def fetch() -> None:
        try:
            results.append(ensure_release(ML_1M, tmp_path, url=url, progress=False))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert results == [tmp_path / "ml-1m"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["ml-1m"]
    assert files_under(tmp_path / "ml-1m") == ["README", "movies.dat", "ratings.dat"]


def test_progress_messages(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.publish(ML_1M, make_zip(ML_1M))
    ensure_release(ML_1M, tmp_path / "plain", url=url, progress=True)  # captured stderr is no TTY
    err = capsys.readouterr().err
    assert err.splitlines() == [f"downloading ml-1m from {url}", f"ml-1m is ready in {tmp_path / 'plain' / 'ml-1m'}"]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    ensure_release(ML_1M, tmp_path / "tty", url=url, progress=True)
    assert "\r[" in terminal.getvalue() and "100%" in terminal.getvalue()

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    ensure_release(ML_1M, tmp_path / "quiet", url=url, progress=False)
    assert "\r" not in terminal.getvalue() and len(terminal.getvalue().splitlines()) == 2


# -- mfrec-data --------------------------------------------------------------------------------------


def test_cli_download_and_list(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_zip(ML_1M)
    url = server.publish(ML_1M, data)

    assert main(["download", "ml-1m", "--root", str(tmp_path), "--url", url, "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ml-1m")

    assert main(["list", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data root: {tmp_path}"
    states = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert states == {name: "present" if name == "ml-1m" else "missing" for name in RELEASES}


def test_cli_uses_mfrec_data_dir(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MFREC_DATA_DIR", str(tmp_path / "env-root"))
    data = make_zip(ML_100K)
    url = server.publish(ML_100K, data)
    assert main(["download", "ml-100k", "--url", url, "--md5", md5_hex(data), "--no-progress"]) == 0
    assert is_present(ML_100K, tmp_path / "env-root")
    capsys.readouterr()

    (tmp_path / "env-root" / "ml-1m").mkdir()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "incomplete" in out and "lacks ratings.dat, movies.dat" in out


def test_cli_errors(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", "ml-2m", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfrec-data: error: unknown release 'ml-2m'; valid: ml-100k, ml-1m")

    url = server.publish(ML_1M, make_zip(ML_1M), md5=grouplens_md5("ml-1m.zip", b"other"))
    assert main(["download", "ml-1m", "--root", str(tmp_path), "--url", url, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith("mfrec-data: error: the download of ")
    assert "Traceback" not in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == []

    assert main([]) == 2  # no command: argparse's usage message, not an exception
    assert "usage: mfrec-data" in capsys.readouterr().err
