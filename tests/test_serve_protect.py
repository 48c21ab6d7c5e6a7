"""What `pneumocam serve` refuses before a route runs, driven through the command itself as users start it: foreign
Host and Origin headers, uploads over the limit (chunked ones counted as they arrive), and the headers every answer
carries."""

import io
import select
import signal
import socket
import subprocess
import time

import httpx
import numpy as np
import pytest
from PIL import Image

LIMIT_MB = 1


def _png(side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(side * side).reshape(side, side) % 251).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def serving(tiny_run, start_serve_once):
    """(base URL, port) of a `pneumocam serve` process with a 1 MB upload limit."""
    process, base = start_serve_once(
        "--checkpoint", tiny_run / "train" / "model.pt", "--runs", tiny_run.parent, "--max-upload-mb", LIMIT_MB,
        "--device", "cpu",
    )  # fmt: skip
    try:
        yield base, int(base.rsplit(":", 1)[1])
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_foreign_host_header_is_refused(serving):
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name in Host."""
    base, port = serving
    assert httpx.get(base + "/api/runs", headers={"Host": "127.0.0.2"}).status_code == 400
    assert httpx.get(base + "/api/runs", headers={"Host": "rebound-name"}).status_code == 400
    assert httpx.get(base + "/api/runs", headers={"Host": f"127.0.0.2:{port}"}).status_code == 400
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(base + "/api/runs", headers={"Host": name}).status_code == 200, name


def test_requests_from_another_web_site_are_refused(serving):
    base, port = serving
    upload = {"file": ("a.png", _png(), "image/png")}
    # another host name on the same port: the request is addressed to 127.0.0.1, so a page at localhost is another
    # origin (only the header names it; no request leaves loopback)
    foreign = httpx.post(base + "/api/predict", files=upload, headers={"Origin": f"http://localhost:{port}"})
    assert foreign.status_code == 403 and "another web site" in foreign.json()["detail"]
    other_port = httpx.post(base + "/api/predict", files=upload, headers={"Origin": f"http://127.0.0.1:{port + 1}"})
    assert other_port.status_code == 403  # another local page is another origin too
    assert httpx.post(base + "/api/predict", files=upload, headers={"Origin": "null"}).status_code == 403
    cross = httpx.post(base + "/api/predict", files=upload, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403  # a browser that sends no Origin still says where the request came from
    assert httpx.get(base + "/api/runs", headers={"Origin": f"http://localhost:{port}"}).status_code == 403
    own = httpx.post(
        base + "/api/predict", files=upload, headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}, timeout=60
    )
    assert own.status_code == 200, own.text
    assert httpx.post(base + "/api/predict", files=upload, timeout=60).status_code == 200  # curl, scripts: no Origin


def test_every_answer_carries_the_protective_headers(serving, tiny_run):
    base, _ = serving
    for path in ("/", "/runs", "/api/health", "/static/app.js", "/api/runs/none/predictions"):
        headers = httpx.get(base + path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        policy = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["script-src"] == "'self'", path
        assert "unsafe-inline" not in headers["content-security-policy"], path
    report = httpx.get(f"{base}/runs/{tiny_run.name}/report.html")
    assert report.status_code == 200
    policy = report.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy  # a run's report runs no script at all


def _chunked_upload(port: int, total: int, chunk: int = 64 * 1024) -> tuple[int, int]:
    """(status, bytes of body sent) for a chunked multipart upload of `total` bytes that stops once the server
    answers."""
    boundary = "pneumocamtest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    request = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        body = head
        payload = b"0" * chunk
        deadline = time.monotonic() + 60
        while sent < total and time.monotonic() < deadline:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            part = body + payload
            body = b""
            try:
                s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(part)
        else:
            closing = f"\r\n--{boundary}--\r\n".encode()
            try:
                s.sendall(f"{len(closing):x}\r\n".encode() + closing + b"\r\n0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        s.settimeout(30)
        while b"\r\n" not in answer:
            data = s.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), sent


def test_a_chunked_upload_stops_at_the_limit(serving):
    """No Content-Length: the bytes are counted as they arrive, and the answer comes long before 64 MB are sent."""
    _, port = serving
    status, sent = _chunked_upload(port, total=64 * 1024 * 1024)
    assert status == 413
    assert sent < 16 * LIMIT_MB * 1024 * 1024  # the limit plus what socket buffers held, not the whole upload
    # A Content-Length over the limit is refused before any of the body is read, and the server is still up.
    big = httpx.post(
        f"http://127.0.0.1:{port}/api/predict", files={"file": ("b.png", b"0" * (2 * 1024 * 1024), "image/png")}
    )
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
