"""Hints and notes, and the one file of state they keep.

The state lives in `.kata/` at the repository root (KATA_STATE moves it):
    .kata/hints.json           {topic: the hint level shown last}; `--hint TOPIC` shows the next one
    .kata/backups/TOPIC-*.py   your file as it was before each --reset or --restore (kata/reset.py)
Deleting the folder loses nothing but those two things.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from kata import topics
from kata.loader import ROOT


def state_dir() -> Path:
    return Path(os.environ.get("KATA_STATE") or ROOT / ".kata")


def levels() -> dict:
    """{topic: hint level shown last}."""
    try:
        data = json.loads((state_dir() / "hints.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}


def _save(state: dict) -> None:
    try:
        state_dir().mkdir(parents=True, exist_ok=True)
        (state_dir() / "hints.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    except OSError:  # a read-only checkout (Colab's site-packages): the hint is still shown
        pass


KINDS = {1: "the concept", 2: "the formula"}


class NoSuchLevel(ValueError):
    """A hint level the topic does not have."""


def hint_text(name: str, level: int | None = None) -> list[str]:
    """The lines `--hint` (and a notebook's hint()) print: the next level (or `level`, which shows
    that level again and keeps how far you got), and what to do after it, in both spellings."""
    texts = topics.hints(name)
    if not texts:
        return [f"{name}: no hints written yet; python grader.py {name} shows what the tests expect."]
    if level is not None and not 1 <= level <= len(texts):
        raise NoSuchLevel(f"{name} has hint levels 1 to {len(texts)}, not {level}")
    state = levels()
    if level is None:
        level = min(state.get(name, 0) + 1, len(texts))
    state[name] = max(level, state.get(name, 0))
    _save(state)
    kind = KINDS.get(level, "near the solution")
    lines = [f"{name}, hint {level} of {len(texts)} ({kind}):", texts[level - 1].strip()]
    again = f'python grader.py --hint {name} (in a notebook: hint("{name}"))'
    level_n = f'--level N (hint("{name}", level=N))'
    notes = f'python grader.py --explain {name} (explain("{name}"))'
    if level < len(texts):
        lines.append(f"\n({again} again for the next level; {level_n} shows level N)")
    else:
        lines.append(f"\n(that was the last hint; {notes} answers the viewer questions)")
    return lines


def notes_text(name: str) -> str:
    text = topics.notes(name).strip()
    return text or f"{name}: no notes written yet."
