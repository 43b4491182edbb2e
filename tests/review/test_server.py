"""The review server over plain HTTP: escaping, CSRF, Origin/Host checks, and edits reaching the database."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode, urlsplit

from workflow.store import Store

from .conftest import XSS


def _request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    parts = urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    data = urlencode(body) if body is not None else None
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    con.request(method, "/edit" if method == "POST" else "/", body=data, headers=hdrs | (headers or {}))
    res = con.getresponse()
    return res.status, dict(res.getheaders()), res.read().decode()


def test_page_escapes_untrusted_text_and_forbids_scripts(server):
    url, _ = server
    status, headers, html = _request(url)
    assert status == 200
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers scripts
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_post_needs_the_token_same_origin_and_right_host(server, run_db):
    url, app = server
    db, run_id = run_db
    with Store(db) as store:
        before = store.taxonomy(run_id)
        lid = before[1][0].label_id
    form = {"action": "rename", "label_id": lid, "name": "Hijacked"}
    assert _request(url, "POST", form)[0] == 403
    assert _request(url, "POST", form | {"csrf": "x" * 43})[0] == 403
    good = form | {"csrf": app.csrf}
    assert _request(url, "POST", good, {"Origin": "http://evil.example"})[0] == 403
    assert _request(url, "POST", good, {"Host": "evil.example"})[0] == 421
    assert _request(url, headers={"Host": "rebound.example:80"})[0] == 421
    with Store(db) as store:
        assert store.taxonomy(run_id) == before and store.reviews(run_id) == []
    origin = url.rstrip("/")
    status, headers, _ = _request(url, "POST", good, {"Origin": origin})
    assert status == 303 and headers["Location"] == f"/#label-{lid}"
    with Store(db) as store:
        assert store.taxonomy(run_id)[1][0].name == "Hijacked"
        assert store.reviews(run_id)[0]["reviewer"] == "tester"


def test_invalid_edit_shows_a_message_and_changes_nothing(server, run_db):
    url, app = server
    db, run_id = run_db
    with Store(db) as store:
        a, b = store.taxonomy(run_id)[1][:2]
    status, _, _ = _request(url, "POST", {"csrf": app.csrf, "action": "rename", "label_id": a.label_id, "name": b.name})
    assert status == 303
    html = _request(url)[2]
    assert re.search(r'class="flash error"[^>]*>[^<]*already exists', html)
    with Store(db) as store:
        assert store.reviews(run_id) == []


def test_queue_lists_suspects_with_accept_buttons(server):
    url, _ = server
    html = _request(url)[2]
    assert html.count('class="qitem"') > 0
    assert "Accept suggestion" in html
    assert XSS not in html


def _tnt() -> str:
    """The installed console script, as a user runs it."""
    import shutil
    import sys
    from pathlib import Path

    return (str(Path(sys.executable).with_name("tnt")) if Path(sys.executable).with_name("tnt").exists()
            else shutil.which("tnt"))


def test_cli_prints_a_localhost_url_and_serves_the_page(run_db):
    import os
    import subprocess
    import time

    db, run_id = run_db
    proc = subprocess.Popen(
        [_tnt(), "review", run_id, "--db", db, "--no-open", "--reviewer", "cli"],
        stderr=subprocess.PIPE, text=True, env=os.environ | {"COLUMNS": "300"},
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = m.group(0) if m else None
        assert url, "no URL printed"
        status, _, html = _request(url)
        assert status == 200 and run_id in html and "reviewing as <b>cli</b>" in html
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_refuses_unknown_run_in_one_line(run_db):
    import subprocess

    db, _ = run_db
    res = subprocess.run([_tnt(), "review", "nope", "--db", db, "--no-open"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "no run 'nope'" in res.stderr and "Traceback" not in res.stderr
