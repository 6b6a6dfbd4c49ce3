"""Your file against the stub, your backups and the reference: --reset, --restore, --compare.

Nothing here deletes work: reset and restore back up the current file first (unless it is the
untouched stub, which can always be generated again), into .kata/backups/ (kata/hintstate.py).
"""
from __future__ import annotations

import difflib
import shutil
import time
from pathlib import Path

from kata.generate import expected
from kata.hintstate import state_dir
from kata.loader import BUILTIN, show_path


class Refused(Exception):
    """One sentence saying why the command did nothing (exit status 1)."""


def backups(name: str) -> list[Path]:
    folder = state_dir() / "backups"
    return sorted(folder.glob(f"{name}-*.py"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []


def backup(target: Path, name: str) -> Path:
    folder = state_dir() / "backups"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{name}-{stamp}.py", 1
    while path.exists():  # two in one second keep both
        path, n = folder / f"{name}-{stamp}-{n}.py", n + 1
    shutil.copy2(target, path)
    return path


def _untouched(target: Path, name: str) -> bool:
    return target.is_file() and target.read_text(encoding="utf-8") == expected(name)


def reset(name: str, impl: Path) -> list[str]:
    """Back up the learner's file (if it is not the untouched stub), then write the stub."""
    if impl == BUILTIN["solutions"].resolve():
        raise ValueError("--reset works on your exercises, not on solutions/")
    target = impl / f"{name}.py"
    if _untouched(target, name):
        return [f"{show_path(target)} is the untouched stub already: nothing to reset, nothing backed up"]
    if not target.is_file():
        target.write_text(expected(name), encoding="utf-8")
        return [f"{show_path(target)} was missing: wrote the {name} stub there"]
    lines = [f"backed up {show_path(target)} to {show_path(backup(target, name))}"]
    target.write_text(expected(name), encoding="utf-8")
    lines.append(f"wrote the {name} stub to {show_path(target)} (python grader.py --restore {name} brings yours back)")
    return lines


def restore(name: str, impl: Path) -> list[str]:
    """Bring back the latest backup, backing up the current file first."""
    found = backups(name)
    if not found:
        raise Refused(f"there is no backup of {name} in {show_path(state_dir() / 'backups')}: --reset makes one")
    latest, target = found[-1], impl / f"{name}.py"
    lines = []
    if target.is_file() and not _untouched(target, name) and target.read_bytes() != latest.read_bytes():
        lines.append(f"backed up {show_path(target)} to {show_path(backup(target, name))}")
    shutil.copy2(latest, target)
    lines.append(f"restored {show_path(target)} from {show_path(latest)}")
    return lines


def compare(name: str, impl: Path, passed: bool) -> list[str]:
    """Your file beside the reference, once your topic passes."""
    if not passed:
        raise Refused(f"{name} does not pass yet: --compare shows the reference once your own code passes "
                      f"(python grader.py {name} says what is left)")
    reference = BUILTIN["solutions"] / f"{name}.py"
    if not reference.is_file():
        raise Refused("the reference (solutions/) is not installed here: --compare works in a clone of the repository")
    mine = (impl / f"{name}.py").read_text(encoding="utf-8").splitlines()
    theirs = reference.read_text(encoding="utf-8").splitlines()
    diff = list(difflib.unified_diff(mine, theirs, f"yours: {show_path(impl / f'{name}.py')}",
                                     f"reference: {show_path(reference)}", lineterm="", n=2))
    lines = [f"{name} passes: your code beside the reference (lines starting - are yours, + the reference's)"]
    lines += diff or ["(the two files are the same)"]
    lines.append(f"\nwhy it is written this way, and the viewer questions: python grader.py --explain {name} "
                 f"(kata/notes/{name}.md)")
    return lines
