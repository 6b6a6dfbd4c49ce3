"""kata/data.py: where names.txt comes from, how a wrong file is reported, the download over a
real HTTP server on loopback, and the lecture's split of the real file."""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from kata import data

NAMES = "emma\nolivia\nava\n"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test sees the developer's environment or cache, or reaches the internet."""
    monkeypatch.delenv("MAKEMORE_NAMES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MAKEMORE_NAMES_URL", f"http://127.0.0.1:{_closed_port()}/names.txt")


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_find_names_prefers_the_given_path_over_env_and_cache(tmp_path, monkeypatch):
    given = _write(tmp_path / "given.txt", NAMES)
    monkeypatch.setenv("MAKEMORE_NAMES", str(_write(tmp_path / "env.txt", NAMES)))
    _write(data.cache_path(), NAMES)
    assert data.find_names(given) == given


def test_find_names_uses_env_before_cache(tmp_path, monkeypatch):
    env = _write(tmp_path / "env.txt", NAMES)
    monkeypatch.setenv("MAKEMORE_NAMES", str(env))
    _write(data.cache_path(), NAMES)
    assert data.find_names() == env


def test_cache_path_honours_xdg_cache_home(tmp_path):
    assert data.cache_path() == tmp_path / "cache" / "makemore-kata" / "names.txt"


def test_find_names_uses_a_cache_with_the_right_sha256(monkeypatch):
    cached = _write(data.cache_path(), NAMES)
    monkeypatch.setattr(data, "SHA256", hashlib.sha256(NAMES.encode()).hexdigest())
    assert data.find_names() == cached


def test_find_names_rejects_a_cache_with_the_wrong_sha256_naming_it():
    cached = _write(data.cache_path(), "not\nthe\nfile\n")
    with pytest.raises(data.DataError, match="is not the makemore names.txt") as e:
        data.find_names()
    assert str(cached) in str(e.value)


def test_missing_given_path_is_named(tmp_path):
    with pytest.raises(data.DataError, match="--data points to .*nothere.txt, which is not a file"):
        data.find_names(tmp_path / "nothere.txt")


@pytest.mark.parametrize("text, bad", [("emma\nOlivia\n", "Olivia"), ("emma\nava 2\n", "ava 2"),
                                       ("emma\n\nava\n", "''"), ("emma,ava\n", "emma,ava")])
def test_read_words_rejects_content_that_is_not_one_lowercase_name_a_line(tmp_path, text, bad):
    path = _write(tmp_path / "names.txt", text)
    with pytest.raises(data.DataError, match="is not a name") as e:
        data.read_words(path)
    assert str(path) in str(e.value) and bad in str(e.value)


def test_read_words_rejects_a_binary_file_naming_it(tmp_path):
    path = tmp_path / "names.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(data.DataError, match="is not a names list") as e:
        data.read_words(path)
    assert str(path) in str(e.value)


def test_download_over_loopback_checks_sha256_and_caches(server, monkeypatch):
    root, base = server
    _write(root / "names.txt", NAMES)
    monkeypatch.setattr(data, "SHA256", hashlib.sha256(NAMES.encode()).hexdigest())
    monkeypatch.setenv("MAKEMORE_NAMES_URL", f"{base}/names.txt")
    path = data.find_names()
    assert path == data.cache_path() and path.read_text() == NAMES
    assert [p.name for p in path.parent.iterdir()] == ["names.txt"]  # no .part file left behind
    assert data.read_words(path) == ["emma", "olivia", "ava"]


def test_download_with_checksum_mismatch_saves_nothing(server):
    root, base = server
    _write(root / "names.txt", NAMES)  # not the makemore file: its sha256 differs from data.SHA256
    with pytest.raises(data.DataError, match="sha256 .* expected 0a30b5557f19"):
        data.find_names(url=f"{base}/names.txt")
    assert not data.cache_path().parent.exists() or not any(data.cache_path().parent.iterdir())


def test_download_http_404_says_how_to_get_the_file(server):
    _, base = server
    with pytest.raises(data.DataError, match="download from .* failed .*--data PATH"):
        data.find_names(url=f"{base}/missing.txt")


def test_download_connection_refused_says_how_to_get_the_file():
    with pytest.raises(data.DataError) as e:
        data.find_names()  # MAKEMORE_NAMES_URL points at a closed loopback port (fixture)
    message = str(e.value)
    assert "refused" in message.lower()
    assert "--data PATH" in message and "MAKEMORE_NAMES" in message and str(data.cache_path()) in message
    assert "\n" not in message


def test_build_dataset_pads_with_dots_and_ends_each_word():
    stoi = {".": 0, "a": 1, "b": 2}
    X, Y = data.build_dataset(["ab"], stoi, block_size=3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]]
    assert Y.tolist() == [1, 2, 0]


def _real_names() -> Path | None:
    for candidate in (os.environ.get("MAKEMORE_NAMES"), Path(__file__).resolve().parents[2] / "shared/data/names.txt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


REAL = _real_names()


@pytest.mark.skipif(REAL is None, reason="the real names.txt is not here: set MAKEMORE_NAMES (CI does) "
                    "or put it at ../shared/data/names.txt")
def test_lecture_pipeline_gives_the_lecture_counts():
    assert data.sha256(REAL) == data.SHA256
    d = data.lecture_dataset(data.read_words(REAL))
    assert (len(d.Xtr), len(d.Xdev), len(d.Xte)) == (182_625, 22_655, 22_866)
    assert d.vocab_size == 27 and d.itos[0] == "." and d.itos[1] == "a" and d.itos[26] == "z"
