"""Fetching upstream files: mirrors in order, sha256 verified, nothing half-written."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from bench.data.cards import Card
from bench.data.fetch import fetch, verify
from bench.errors import BenchError


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/www; yields (base URL, list of requested paths)."""
    www = tmp_path / "www"
    www.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet, but remember the request
            seen.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=www))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www, seen
    httpd.shutdown()


def _card(files: dict[str, bytes], mirrors: list[str]) -> Card:
    raw = {
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in files.items()},
        "source": {"commit": "abc", "mirrors": mirrors},
    }
    return Card(name="toy", raw=raw, folder=Path("."))


def _put(root: Path, files: dict[str, bytes]) -> None:
    for rel, blob in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(blob)


def test_fetch_tries_mirrors_in_order_and_keeps_only_verified_files(server, tmp_path):
    base, www, seen = server
    files = {"data/a.tsv": b"x\ty\n1\t2\n", "data/img/b.jpg": bytes(range(256)) * 10}
    _put(www / "bad" / "abc", {k: b"corrupt" for k in files})
    _put(www / "good" / "abc", files)
    card = _card(files, [base + "/bad/{commit}/{path}", base + "/good/{commit}/{path}"])
    data = tmp_path / "data-dir"
    assert fetch(card, data, log=lambda _: None) == 2
    for rel, blob in files.items():
        assert (data / "toy" / rel).read_bytes() == blob
    verify(card, data)
    assert not [p for p in (data / "toy").rglob(".*")]  # no temporary files left behind
    requests = len(seen)
    assert fetch(card, data, log=lambda _: None) == 0 and len(seen) == requests  # idempotent


def test_fetch_fails_clearly_when_no_mirror_has_the_right_bytes(server, tmp_path):
    base, www, _ = server
    files = {"a.tsv": b"real content"}
    _put(www / "bad" / "abc", {"a.tsv": b"tampered content"})
    card = _card(files, [base + "/bad/{commit}/{path}", base + "/missing/{commit}/{path}"])
    with pytest.raises(BenchError, match=r"could not fetch toy/a.tsv .*sha256.*404"):
        fetch(card, tmp_path / "d", log=lambda _: None)
    assert not (tmp_path / "d" / "toy" / "a.tsv").exists()
    assert not list((tmp_path / "d" / "toy").glob(".*"))
