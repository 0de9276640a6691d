"""Tests for gluon_bof/utils/download.py against a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from gluon_bof.utils.download import DownloadError, check_sha1, download, file_lock, file_sha1

DATA = np.random.RandomState(0).bytes(300_000)
SHA1 = hashlib.sha1(DATA).hexdigest()
KW = dict(progress=False, chunk=1 << 16, timeout=5, backoff=0)


class Server:
    """Serves ``files`` (url path -> bytes), logging ``(path, Range header, status, bytes sent)``.

    Switches: ``range_support`` (False: ignore Range, answer 200); ``corrupt_times`` (serve the
    bytes with one flipped byte this many times); ``drop_times`` / ``drop_after`` (close the
    connection after ``drop_after`` body bytes this many times); ``delay`` (seconds per 64 KB)."""

    def __init__(self):
        self.files, self.log = {}, []
        self.range_support, self.corrupt_times, self.drop_times = True, 0, 0
        self.drop_after, self.delay = 100_000, 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                data = server.files.get(self.path)
                if data is None or len(server.log) > 50:  # bound the number of requests
                    server.log.append((self.path, rng, 404, 0))
                    self.send_error(404)
                    return
                if server.corrupt_times > 0:
                    server.corrupt_times -= 1
                    data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
                start, status = 0, 200
                if rng and server.range_support:
                    start, status = int(rng.split("=")[1].split("-")[0]), 206
                    if start >= len(data):
                        server.log.append((self.path, rng, 416, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.drop_times > 0:
                    server.drop_times -= 1
                    body = body[:server.drop_after]
                server.log.append((self.path, rng, status, len(body)))  # before the client can return
                for i in range(0, len(body), 1 << 16):
                    time.sleep(server.delay)
                    self.wfile.write(body[i:i + (1 << 16)])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    s.files["/data.bin"] = DATA
    yield s
    s.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_full_download(server, tmp_path):
    out = download(server.url + "/data.bin", str(tmp_path / "sub" / "data.bin"), sha1=SHA1, **KW)
    assert out == str(tmp_path / "sub" / "data.bin")
    assert read(out) == DATA
    assert not os.path.exists(out + ".part")
    assert server.log == [("/data.bin", None, 200, len(DATA))]


def test_directory_destination_uses_url_name(server, tmp_path):
    out = download(server.url + "/data.bin", str(tmp_path), **KW)
    assert out == str(tmp_path / "data.bin") and read(out) == DATA


def test_resume_partial_with_range(server, tmp_path):
    out = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(DATA[:123_456])
    download(server.url + "/data.bin", str(out), sha1=SHA1, **KW)
    assert read(out) == DATA
    assert server.log == [("/data.bin", "bytes=123456-", 206, len(DATA) - 123_456)]


def test_complete_or_overlong_partial_file(server, tmp_path):
    out = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(DATA)  # complete, but not yet verified and renamed
    download(server.url + "/data.bin", str(out), sha1=SHA1, **KW)
    assert read(out) == DATA and server.log == [("/data.bin", f"bytes={len(DATA)}-", 416, 0)]
    server.log.clear()
    (tmp_path / "data2.bin.part").write_bytes(DATA + b"junk")  # longer than the file: restart
    download(server.url + "/data.bin", str(tmp_path / "data2.bin"), sha1=SHA1, **KW)
    assert read(tmp_path / "data2.bin") == DATA
    assert [(r, st) for _, r, st, _ in server.log] == [(f"bytes={len(DATA) + 4}-", 416), (None, 200)]


def test_server_without_range_restarts(server, tmp_path):
    server.range_support = False
    out = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)  # garbage that must not be kept
    download(server.url + "/data.bin", str(out), sha1=SHA1, **KW)
    assert read(out) == DATA
    assert server.log == [("/data.bin", "bytes=1000-", 200, len(DATA))]


def test_corrupted_bytes_retry_then_error(server, tmp_path):
    server.corrupt_times = 100
    bad = DATA[:1000] + bytes([DATA[1000] ^ 0xFF]) + DATA[1001:]
    out = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as e:
        download(server.url + "/data.bin", str(out), sha1=SHA1, retries=2, **KW)
    msg = str(e.value)
    for part in (str(out), server.url + "/data.bin", SHA1, hashlib.sha1(bad).hexdigest()):
        assert part in msg
    assert len(server.log) == 3  # 1 + 2 retries, each from the start (no Range after a mismatch)
    assert all(rng is None for _, rng, _, _ in server.log)
    assert not os.path.exists(out) and not os.path.exists(str(out) + ".part")


def test_corrupted_once_then_good(server, tmp_path):
    server.corrupt_times = 1
    out = download(server.url + "/data.bin", str(tmp_path / "d.bin"), sha1=SHA1, **KW)
    assert read(out) == DATA and len(server.log) == 2


def test_dropped_connection_resumes(server, tmp_path):
    server.drop_times, server.drop_after = 1, 100_000
    out = download(server.url + "/data.bin", str(tmp_path / "d.bin"), sha1=SHA1, **KW)
    assert read(out) == DATA
    assert server.log == [("/data.bin", None, 200, 100_000),
                          ("/data.bin", "bytes=100000-", 206, len(DATA) - 100_000)]


def test_dropped_connection_without_resume(server, tmp_path):
    server.drop_times = 1
    out = download(server.url + "/data.bin", str(tmp_path / "d.bin"), sha1=SHA1, resume=False, **KW)
    assert read(out) == DATA
    assert [rng for _, rng, _, _ in server.log] == [None, None]


def test_dropped_every_time_fails(server, tmp_path):
    server.drop_times, server.drop_after = 100, 0
    with pytest.raises(DownloadError, match="d.bin"):
        download(server.url + "/data.bin", str(tmp_path / "d.bin"), retries=1, **KW)
    assert len(server.log) == 2


def test_http_404_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(server.url + "/missing.bin", str(tmp_path / "m.bin"), retries=3, **KW)
    assert len(server.log) == 1


def test_skip_when_present(server, tmp_path):
    out = tmp_path / "data.bin"
    out.write_bytes(DATA)
    download(server.url + "/data.bin", str(out), sha1=SHA1, **KW)
    download(server.url + "/data.bin", str(out), **KW)  # no sha1: existence is enough
    assert server.log == []
    download(server.url + "/data.bin", str(out), sha1=SHA1, overwrite=True, **KW)
    assert len(server.log) == 1


def test_wrong_existing_file_is_replaced(server, tmp_path):
    out = tmp_path / "data.bin"
    out.write_bytes(b"old")
    download(server.url + "/data.bin", str(out), sha1=SHA1, **KW)
    assert read(out) == DATA and len(server.log) == 1


def test_file_url_and_plain_path_copy(tmp_path):
    src = tmp_path / "mirror" / "data.bin"
    src.parent.mkdir()
    src.write_bytes(DATA)
    a = download(src.as_uri(), str(tmp_path / "a.bin"), sha1=SHA1, **KW)
    b = download(str(src), str(tmp_path / "b.bin"), sha1=SHA1[:8], **KW)
    assert read(a) == DATA and read(b) == DATA
    with pytest.raises(DownloadError, match="no such file"):
        download(str(tmp_path / "nope.bin"), str(tmp_path / "c.bin"), **KW)
    with pytest.raises(DownloadError, match=f"after 1 attempt.*expected {'0' * 40}, got {SHA1}"):
        download(str(src), str(tmp_path / "d.bin"), sha1="0" * 40, retries=3, **KW)  # no retry


def test_check_sha1(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(DATA)
    assert file_sha1(str(p)) == SHA1
    assert check_sha1(str(p), SHA1) and check_sha1(str(p), SHA1[:8].upper())
    assert not check_sha1(str(p), "0" * 40) and not check_sha1(str(p), "")


def _download_in_child(url, out, queue):
    try:
        download(url, out, sha1=SHA1, **KW)
        queue.put("ok")
    except Exception as e:  # pragma: no cover
        queue.put(repr(e))


def test_lock_serialises_two_processes(server, tmp_path):
    server.delay = 0.05  # ~0.25 s per download, so the two overlap
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    out = str(tmp_path / "data.bin")
    procs = [ctx.Process(target=_download_in_child, args=(server.url + "/data.bin", out, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok", "ok"]
    assert read(out) == DATA
    assert len(server.log) == 1  # the second process found the verified file


def _hold_lock(path, seconds, queue):
    with file_lock(path):
        queue.put(("held", time.time()))
        time.sleep(seconds)
        queue.put(("released", time.time()))


def test_file_lock_excludes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    path = str(tmp_path / "f")
    p = ctx.Process(target=_hold_lock, args=(path, 0.4, queue))
    p.start()
    assert queue.get(timeout=10)[0] == "held"
    with file_lock(path):
        got = time.time()
    p.join(10)
    event, released = queue.get(timeout=5)
    assert event == "released" and got >= released
