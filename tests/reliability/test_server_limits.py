"""Both web servers (the review page on http.server, `tnt serve` on uvicorn) over real loopback sockets, against
hostile or broken clients: a bad Content-Length is refused at once without reading the body, an oversized header
block gets 431, a connection that stalls (or trickles) is dropped and its thread or connection freed, connections
beyond the cap get 503, and a multi-megabyte text to `tnt serve` is cut as the embedder cuts it and flagged
`truncated`."""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from workflow.classify import serve, serve_uvicorn
from workflow.review import server as review

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- helpers


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from `sock` (status 0 if the server closed without answering)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes, float]:
    """Send `raw` and read one response, keeping our side open (the server must answer without waiting for more)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        start = time.monotonic()
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the server may refuse and close before taking all of it; its answer is still to be read
        try:
            status, headers, body = read_response(sock)
        except (TimeoutError, ConnectionResetError):
            status, headers, body = 0, {}, b""
        return status, headers, body, time.monotonic() - start


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed `sock` (EOF or reset), False if it stays open for `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def start(srv) -> Iterator:
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        closer = threading.Thread(target=srv.server_close, daemon=True)
        closer.start()
        closer.join(30)


@pytest.fixture
def review_server(tmp_path) -> Callable[..., review.GuardedServer]:
    """A factory of live review servers (keyword arguments go to make_server); no request here reaches the
    database, so the app points at a file that does not exist."""
    gens = []

    def make(**limits):
        app = review.ReviewApp(str(tmp_path / "absent.duckdb"), "run-x", "tester")
        gen = start(review.make_server(app, HOST, 0, **limits))
        gens.append(gen)
        return next(gen)

    yield make
    for gen in gens:
        next(gen, None)


class VectorModel:
    """Stands in for a ServingModel: each record carries the head of its embedding, so a test can tell which text
    the embedder actually read."""

    embedding_model = "minilm-int8"
    version = "stub"
    labels = ["a"]
    taxonomy: list = []

    def records(self, X: np.ndarray) -> list[dict]:
        return [{"label_id": "a", "label_name": "A", "probability": 1.0, "uncertain": False,
                 "head": [float(v) for v in x[:16]]} for x in X]


@pytest.fixture
def serve_server() -> Callable[..., serve.ClassifyServer]:
    pytest.importorskip("onnxruntime")
    from workflow.classify.embed import EmbeddingUnavailable

    gens = []

    def make(**limits):
        try:
            srv = serve_uvicorn.make_server(VectorModel(), HOST, 0, **limits)  # type: ignore[arg-type]
        except EmbeddingUnavailable as exc:
            pytest.skip(str(exc))
        gen = start(srv)
        gens.append(gen)
        return next(gen)

    yield make
    for gen in gens:
        next(gen, None)


def post(port: int, path: str, ctype: str, extra: bytes, body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {ctype}\r\n".encode() + extra
            + b"\r\n" + body)


FORM = "application/x-www-form-urlencoded"
BAD_LENGTHS = [
    (b"Content-Length: -1\r\n", 400, "non-negative integer"),
    (b"Content-Length: abc\r\n", 400, "non-negative integer"),
    (b"Content-Length: 12, 13\r\n", 400, "non-negative integer"),
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400, "non-negative integer"),
    (b"Content-Length: 99999999999999999999999999\r\n", 413, "bytes"),
    (b"", 411, "Content-Length header is required"),
    (b"Transfer-Encoding: chunked\r\n", 411, "chunked"),
]


# --------------------------------------------------------------------------- review page


@pytest.mark.parametrize("header,status,why", BAD_LENGTHS + [
    (f"Content-Length: {review.MAX_BODY + 1}\r\n".encode(), 413, "larger than"),
])
def test_review_refuses_a_bad_content_length_at_once_without_reading_the_body(review_server, capfd, header, status,
                                                                              why):
    srv = review_server()
    port = srv.server_address[1]
    got, headers, body, took = exchange(port, post(port, "/edit", FORM, header, b"csrf=x&action=add"))
    assert (got, took < 5) == (status, True), body
    assert why in body.decode() and headers["content-type"].startswith("text/html")
    assert "Traceback" not in capfd.readouterr().err


def test_review_refuses_negative_length_while_the_client_keeps_sending(review_server, capfd):
    """Content-Length: -1 once made the server read the body to EOF (hundreds of MB); now it answers at once and
    stops reading, even while the client is still streaming."""
    srv = review_server()
    port = srv.server_address[1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(post(port, "/edit", FORM, b"Content-Length: -1\r\n"))
        sent, chunk = 0, b"x" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server stopped reading and closed: what we want
        sock.settimeout(5)
        try:
            status = read_response(sock)[0]
        except OSError:
            status = -1  # reset after the refusal: still refused, not read
    assert status in (400, -1)
    assert sent < 64 * 1024 * 1024, "the server read a 64 MB body it had no length for"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: well under 50 MB more
    assert "Traceback" not in capfd.readouterr().err


def test_review_refuses_an_oversized_header_block_with_431(review_server):
    srv = review_server()
    port = srv.server_address[1]
    many_big_lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(40))  # 160 KB, each line ok
    status, _, body, took = exchange(port, post(port, "/edit", FORM, many_big_lines + b"Content-Length: 0\r\n"))
    assert status == 431 and b"larger than" in body and took < 5
    too_many = b"".join(b"X-%d: a\r\n" % i for i in range(150))
    assert exchange(port, post(port, "/edit", FORM, too_many + b"Content-Length: 0\r\n"))[0] == 431


def test_review_drops_stalled_connections_after_the_idle_timeout(review_server):
    srv = review_server(idle_timeout=0.5)
    port = srv.server_address[1]
    base = handler_threads()
    start_at = time.monotonic()
    socks = [socket.create_connection((HOST, port), timeout=10) for _ in range(20)]
    for i, sock in enumerate(socks):
        if i % 2:  # half a request: the line and a header, never the blank line
            sock.sendall(f"POST /edit HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode())
    try:
        assert all(closed_by_server(s, 5) for s in socks)
        assert time.monotonic() - start_at >= 0.4  # held until the idle timeout, not refused outright
        assert wait_for(lambda: handler_threads() <= base, 5), "stalled connections still hold their threads"
    finally:
        for s in socks:
            s.close()


def test_review_drops_a_request_that_trickles_past_the_request_deadline(review_server):
    srv = review_server(idle_timeout=5, request_timeout=1)
    port = srv.server_address[1]
    with socket.create_connection((HOST, port), timeout=10) as sock:
        start_at = time.monotonic()
        sock.sendall(b"POST /edit HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # one header byte every 0.2 s: never idle long enough for the idle timeout
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        closed = closed or closed_by_server(sock, 2)
    assert closed and time.monotonic() - start_at < 6


def test_review_answers_503_beyond_the_connection_cap_and_recovers(review_server):
    srv = review_server(idle_timeout=30, max_connections=3)
    port = srv.server_address[1]
    held = [socket.create_connection((HOST, port), timeout=10) for _ in range(3)]
    try:
        assert wait_for(lambda: srv.slots._value == 0, 5)  # type: ignore[attr-defined]
        status, headers, body, took = exchange(port, b"GET / HTTP/1.1\r\n\r\n")
        assert status == 503 and took < 5 and headers.get("retry-after") == "1"
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: srv.slots._value == 3, 5)  # type: ignore[attr-defined]
    status = exchange(port, post(port, "/edit", FORM, b"Content-Length: abc\r\n"))[0]
    assert status == 400


def test_review_server_closes_at_once_despite_idle_clients(review_server):
    srv = review_server(idle_timeout=60)
    port = srv.server_address[1]
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        assert wait_for(lambda: srv.slots._value < review.MAX_CONNECTIONS, 5)  # type: ignore[attr-defined]
        srv.shutdown()
        closer = threading.Thread(target=srv.server_close, daemon=True)
        start_at = time.monotonic()
        closer.start()
        closer.join(10)
        assert not closer.is_alive() and time.monotonic() - start_at < 5
    finally:
        sock.close()


# --------------------------------------------------------------------------- tnt serve


# h11 (under uvicorn) refuses a Content-Length of 19+ digits as malformed (400) before the app could say 413.
SERVE_BAD_LENGTHS = [(h, 400, "non-negative integer") if s == 413 else (h, s, w) for h, s, w in BAD_LENGTHS]


@pytest.mark.parametrize("header,status,why", SERVE_BAD_LENGTHS + [
    (f"Content-Length: {serve.MAX_BODY_BYTES + 1}\r\n".encode(), 413, "bytes"),
])
def test_serve_refuses_a_bad_content_length_at_once_with_json(serve_server, capfd, header, status, why):
    srv = serve_server()
    port = srv.server_address[1]
    got, headers, body, took = exchange(port, post(port, "/classify", "application/json", header, b'{"texts": []}'))
    assert (got, took < 5) == (status, True), body
    assert why in json.loads(body)["error"] and headers["connection"] == "close"
    assert "Traceback" not in capfd.readouterr().err


def test_serve_refuses_an_oversized_body_before_it_is_sent_when_asked_to_continue(serve_server):
    srv = serve_server()
    port = srv.server_address[1]
    over = f"Content-Length: {serve.MAX_BODY_BYTES + 1}\r\nExpect: 100-continue\r\n".encode()
    status, _, body, _ = exchange(port, post(port, "/classify", "application/json", over))
    assert status == 413 and "bytes" in json.loads(body)["error"]


def test_serve_refuses_an_oversized_header_block_with_431_json(serve_server):
    srv = serve_server()
    port = srv.server_address[1]
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(40))
    status, _, body, took = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n")
    assert status == 431 and "larger than" in json.loads(body)["error"] and took < 5


def test_serve_drops_stalled_and_idle_keep_alive_connections(serve_server):
    srv = serve_server(idle_timeout=0.5)
    port = srv.server_address[1]
    silent = socket.create_connection((HOST, port), timeout=10)
    half = socket.create_connection((HOST, port), timeout=10)
    half.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"texts\"")  # body never finished
    kept = socket.create_connection((HOST, port), timeout=10)
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: then nothing
    try:
        assert read_response(kept)[0] == 200
        assert all(closed_by_server(s, 5) for s in (silent, half, kept))
        assert wait_for(lambda: srv.open_connections() == 0, 5), "stalled connections are still held"
    finally:
        for s in (silent, half, kept):
            s.close()


def test_serve_answers_503_beyond_the_connection_cap(serve_server):
    srv = serve_server(idle_timeout=30, max_connections=2)
    port = srv.server_address[1]
    held = [socket.create_connection((HOST, port), timeout=10) for _ in range(2)]
    try:
        assert wait_for(lambda: srv.open_connections() == 2, 5)
        status, _, body, took = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and "too many connections" in json.loads(body)["error"] and took < 5
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("opening,drip", [
    (b"POST /classify HTTP/1.1\r\n", b"X"),  # the head trickles in, one header byte at a time
    (b"POST /classify HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", b"x"),  # the body does
])
def test_serve_drops_a_request_that_trickles_past_the_request_deadline(serve_server, opening, drip):
    srv = serve_server(idle_timeout=5, request_timeout=1)
    port = srv.server_address[1]
    with socket.create_connection((HOST, port), timeout=10) as sock:
        start_at = time.monotonic()
        sock.sendall(opening)
        closed = False
        for _ in range(40):  # one byte every 0.2 s: never idle long enough for the idle timeout
            try:
                sock.sendall(drip)
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        closed = closed or closed_by_server(sock, 2)
    assert closed and time.monotonic() - start_at < 6
    assert wait_for(lambda: srv.open_connections() == 0, 5)


def test_serve_recovers_after_refusing_beyond_the_cap_and_keeps_alive_within_it(serve_server):
    srv = serve_server(idle_timeout=30, max_connections=2)
    port = srv.server_address[1]
    held = [socket.create_connection((HOST, port), timeout=10) for _ in range(2)]
    try:
        assert wait_for(lambda: srv.open_connections() == 2, 5)
        assert exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 503
        for _ in range(3):  # a held connection is served, request after request
            held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(held[0])[0] == 200
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: srv.open_connections() == 0, 5)
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_serve_cuts_a_huge_text_as_the_embedder_does_and_flags_it(serve_server):
    """A 7.9 MB text once took seconds and over a gigabyte to tokenise whole, only for the embedder to keep its first
    256 tokens. Now it is cut before tokenising: same embedding as its opening words, `truncated: true`, quickly."""
    srv = serve_server()
    port = srv.server_address[1]
    words = "my card payment was declined twice at the shop today and I want to know why "
    huge = (words * (7_900_000 // len(words) + 1))[:7_900_000]
    over_tokens = words * 30  # ~480 tokens: within the character cap, beyond the embedder's 256 tokens
    texts = [huge, "top up failed", over_tokens, huge[:4000]]
    body = json.dumps({"texts": texts}).encode()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status, _, raw, took = exchange(
        port, post(port, "/classify", "application/json", f"Content-Length: {len(body)}\r\n".encode(), body), 120)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert status == 200, raw[:300]
    got = json.loads(raw)
    assert [r["truncated"] for r in got] == [True, False, True, True]
    assert {"label_id", "label_name", "probability", "uncertain"} <= set(got[0])
    # the embedder read the same 256 tokens either way: the huge text embeds as its 4000-character opening
    assert np.allclose(got[0]["head"], got[3]["head"], atol=1e-5)
    assert took < 30 and grew_mb < 300, (took, grew_mb)
