"""Hints and notes, and the one folder of state they keep.

The state lives beside the learner's work, in a `.kata/` folder (KATA_STATE moves it): in a clone,
at its root, shared by the command line and the workbook; with the kata installed as a package
(Colab), in the working directory, which is the notebook's folder. Never inside the installed
package, where every notebook on the machine would share one hint level.
    .kata/hints.json           {topic: the hint level shown last}; `--hint TOPIC` shows the next one
    .kata/backups/TOPIC-*.py   your file as it was before each --reset or --restore (kata/reset.py)
Deleting the folder loses nothing but those two things.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from kata import topics
from kata.loader import BUILTIN, ROOT

# How a learner asks for the next step, where they work: a terminal or a notebook.
ASK = {
    "cli": {"hint": "python grader.py --hint {name}", "level": "python grader.py --hint {name} --level N",
            "explain": "python grader.py --explain {name}", "all": "python grader.py {name} --all"},
    "notebook": {"hint": 'hint("{name}")', "level": 'hint("{name}", level=N)', "explain": 'explain("{name}")',
                 "all": 'check("{name}", all=True)'},
}


def ask(where: str, what: str, name: str) -> str:
    """The command that asks for `what` (hint, level, explain) about topic `name`, as typed `where`."""
    return ASK[where][what].format(name=name)


def state_dir() -> Path:
    """The `.kata/` folder: $KATA_STATE, else the clone's root, else the working directory."""
    if os.environ.get("KATA_STATE"):
        return Path(os.environ["KATA_STATE"])
    in_clone = BUILTIN["exercises"].is_dir() and (ROOT / "grader.py").is_file()
    return (ROOT if in_clone else Path.cwd()) / ".kata"


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
    except OSError:  # a read-only folder: the hint is still shown
        pass


KINDS = {1: "the concept", 2: "the formula"}


class NoSuchLevel(ValueError):
    """A hint level the topic does not have."""


def hint_text(name: str, level: int | None = None, where: str = "cli") -> list[str]:
    """The lines `--hint` (where="cli") and a notebook's hint() (where="notebook") print: the next
    level (or `level`, which shows that level again and keeps how far you got), and what to do
    after it, in the form that fits where it is read."""
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
    if level < len(texts):
        lines.append(f"\n({ask(where, 'hint', name)} again for the next level; {ask(where, 'level', name)} "
                     "shows level N)")
    else:
        lines.append(f"\n(that was the last hint; {ask(where, 'explain', name)} answers the viewer questions)")
    return lines


def notes_text(name: str) -> str:
    text = topics.notes(name).strip()
    return text or f"{name}: no notes written yet."
