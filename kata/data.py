"""The lecture's dataset: find names.txt, check it, and build the lecture's train/val/test split.

Where names.txt comes from, first match wins:
    1. the path given (`python -m kata lecture --data PATH`);
    2. $MAKEMORE_NAMES;
    3. the user cache, $XDG_CACHE_HOME/makemore-kata/names.txt (default ~/.cache/...);
    4. a download of the makemore repository's names.txt ($MAKEMORE_NAMES_URL overrides the
       address), checked against its sha256 and then saved to the user cache.
Nothing is ever written into the repository.
"""
from __future__ import annotations

import hashlib
import os
import random
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
BLOCK_SIZE = 3
SPLIT_SEED = 42


class DataError(RuntimeError):
    """names.txt could not be found, downloaded or read; the message says what to do."""


def cache_path() -> Path:
    """$XDG_CACHE_HOME/makemore-kata/names.txt, or ~/.cache/makemore-kata/names.txt."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "makemore-kata" / "names.txt"


def find_names(path: str | os.PathLike | None = None, *, url: str | None = None, timeout: float = 30) -> Path:
    """The path of a checked names.txt, downloading it into the user cache if needed."""
    given = path or os.environ.get("MAKEMORE_NAMES")
    if given:
        given = Path(given).expanduser()
        if not given.is_file():
            source = "--data" if path else "MAKEMORE_NAMES"
            raise DataError(f"{source} points to {given}, which is not a file")
        return given
    cached = cache_path()
    if cached.is_file():
        if sha256(cached) != SHA256:
            raise DataError(
                f"{cached} is not the makemore names.txt (sha256 {sha256(cached)[:12]}..., expected "
                f"{SHA256[:12]}...): delete it to download again, or pass --data PATH"
            )
        return cached
    return download(cached, url or os.environ.get("MAKEMORE_NAMES_URL") or URL, timeout=timeout)


def download(dest: Path, url: str = URL, timeout: float = 30) -> Path:
    """Fetch `url`, check its sha256, and only then move it to `dest`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"names.txt not found and the download from {url} failed ({reason}). Get it on a machine "
            f"with internet (curl -LO {URL}) and pass --data PATH, set MAKEMORE_NAMES=PATH, or put it "
            f"at {dest}"
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SHA256:
        raise DataError(
            f"the file downloaded from {url} has sha256 {digest[:12]}..., expected {SHA256[:12]}...: "
            "it is not the makemore names.txt; nothing was saved"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    # write beside the destination, then rename: an interrupted download never leaves half a file
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp.write(payload)
    os.replace(tmp.name, dest)
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_words(path: str | os.PathLike) -> list[str]:
    """The names in `path`, one a line; a clear error if it is not a names list (only a-z)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path} is not a names list ({type(e).__name__}: {e})") from None
    words = text.splitlines()
    for number, word in enumerate(words, start=1):
        if not word or not word.isalpha() or not word.islower():
            raise DataError(
                f"{path}:{number}: {word!r} is not a name: names.txt has one name a line, only the "
                "letters a-z (is this the makemore names.txt?)"
            )
    if not words:
        raise DataError(f"{path} is empty: expected one name a line")
    return words


@dataclass(frozen=True)
class Dataset:
    """The lecture's split: (X, Y) pairs for train, val and test, and the vocabulary."""
    Xtr: torch.Tensor  # (182625, 3) int64 for the real names.txt
    Ytr: torch.Tensor  # (182625,)
    Xdev: torch.Tensor  # (22655, 3)
    Ydev: torch.Tensor
    Xte: torch.Tensor  # (22866, 3)
    Yte: torch.Tensor
    itos: dict

    @property
    def vocab_size(self) -> int:
        return len(self.itos)


def build_dataset(words: list[str], stoi: dict, block_size: int = BLOCK_SIZE) -> tuple:
    """Every (context, next character) pair of every word, '.' (index 0) padding the start and
    marking the end, exactly as the lecture builds them."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)  # (N, block_size), (N,)


def lecture_dataset(words: list[str], block_size: int = BLOCK_SIZE) -> Dataset:
    """random.seed(42); random.shuffle(words); 80/10/10 split; the lecture's stoi."""
    chars = sorted(set("".join(words)))
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    stoi["."] = 0
    itos = {i: ch for ch, i in stoi.items()}
    words = list(words)
    random.Random(SPLIT_SEED).shuffle(words)  # the same order as random.seed(42); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return Dataset(
        *build_dataset(words[:n1], stoi, block_size),
        *build_dataset(words[n1:n2], stoi, block_size),
        *build_dataset(words[n2:], stoi, block_size),
        itos=itos,
    )


def load(path: str | os.PathLike | None = None) -> Dataset:
    """Find, check and split names.txt: what `python -m kata lecture` trains on."""
    return lecture_dataset(read_words(find_names(path)))
