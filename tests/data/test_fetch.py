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


HTTP = ("http",)  # the loopback server; the CLI fetches https only


def _card(files: dict[str, bytes], mirrors: list[str], **source) -> Card:
    raw = {
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in files.items()},
        "source": {"commit": "abc", "mirrors": mirrors, **source},
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
    assert fetch(card, data, log=lambda _: None, schemes=HTTP) == 2
    for rel, blob in files.items():
        assert (data / "toy" / rel).read_bytes() == blob
    verify(card, data)
    assert not [p for p in (data / "toy").rglob(".*")]  # no temporary files left behind
    requests = len(seen)
    assert (
        fetch(card, data, log=lambda _: None, schemes=HTTP) == 0 and len(seen) == requests
    )  # idempotent


def test_fetch_fails_clearly_when_no_mirror_has_the_right_bytes(server, tmp_path):
    base, www, _ = server
    files = {"a.tsv": b"real content"}
    _put(www / "bad" / "abc", {"a.tsv": b"tampered content"})
    card = _card(files, [base + "/bad/{commit}/{path}", base + "/missing/{commit}/{path}"])
    with pytest.raises(BenchError, match=r"could not fetch toy/a.tsv .*sha256.*404"):
        fetch(card, tmp_path / "d", log=lambda _: None, schemes=HTTP)
    assert not (tmp_path / "d" / "toy" / "a.tsv").exists()
    assert not list((tmp_path / "d" / "toy").glob(".*"))


def test_only_https_mirrors_are_fetched_by_default(server, tmp_path):
    base, www, seen = server
    files = {"a.tsv": b"content"}
    _put(www / "abc", files)
    for mirror in (base + "/{commit}/{path}", "file:///etc/{path}", "ftp://h/{path}"):
        with pytest.raises(BenchError, match="only https mirrors"):
            fetch(_card(files, [mirror]), tmp_path / "d", log=lambda _: None)
    assert not seen and not (tmp_path / "d").exists()


def test_a_download_stops_at_the_cards_size_cap(server, tmp_path):
    base, www, _ = server
    files = {"big.bin": bytes(5000)}
    _put(www / "abc", files)
    card = _card(files, [base + "/{commit}/{path}"], max_file_bytes=1000)
    with pytest.raises(BenchError, match="larger than the card's cap of 1000 bytes"):
        fetch(card, tmp_path / "d", log=lambda _: None, schemes=HTTP)
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "rel", ["../../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt", "~/escaped.txt"]
)
def test_fetch_writes_nothing_outside_the_dataset_folder(server, tmp_path, rel):
    base, www, seen = server
    (www / "abc").mkdir(parents=True, exist_ok=True)
    (www / "escaped.txt").write_bytes(b"payload")
    card = _card({rel: b"payload"}, [base + "/abc/{path}"])
    with pytest.raises(BenchError, match="paths must be relative to the dataset folder"):
        fetch(card, tmp_path / "data" / "sub", log=lambda _: None, schemes=HTTP)
    assert not seen and list(tmp_path.rglob("escaped.txt")) == [www / "escaped.txt"]
    with pytest.raises(BenchError, match="paths must be relative"):
        verify(card, tmp_path / "data" / "sub")
