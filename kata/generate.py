"""Write exercises/ from solutions/: every `# BEGIN SOLUTION` ... `# END SOLUTION` block becomes
`raise NotImplementedError(...)`; signatures, docstrings and scaffolding stay as they are.

    python -m kata generate           # rewrite exercises/ (overwrites learner work: maintainers only)
    python -m kata generate --check   # exit 1 if exercises/ differs from what would be generated
"""
from __future__ import annotations

import re
from pathlib import Path

from kata.hintstate import ask
from kata.loader import BUILTIN
from kata.topics import NAMES

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
HEADER = (
    "# Exercise file: this one is yours. Replace each `raise NotImplementedError` with your code.\n"
    "# Check it with `pytest -m {topic}` or `python grader.py {topic}`; stuck? `python grader.py --hint {topic}`.\n"
)
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)|^(\s*)class\s+(\w+)")


def stub_source(solution: str, topic: str, where: str = "cli") -> str:
    """The exercise text for one solution module's text; its raises ask for a hint as typed
    `where`: in a terminal ("cli", exercises/) or in a notebook ("notebook", the workbook)."""
    out, enclosing, inside = [], [], False
    for number, line in enumerate(solution.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"solutions/{topic}.py:{number}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if indent:  # a block inside a function body becomes a raise; a module-level block just goes
                message = f"{topic}: {_name(enclosing, indent)} is yours to write (hint: {ask(where, 'hint', topic)})"
                quote = "'" if '"' in message else '"'  # the notebook's hint("topic") has double quotes
                out.append(f"{indent}raise NotImplementedError({quote}{message}{quote})\n")
            continue
        if stripped == END:
            if not inside:
                raise ValueError(f"solutions/{topic}.py:{number}: {END} without {BEGIN}")
            inside = False
            continue
        if not inside:
            _track(enclosing, line)
            out.append(line)
    if inside:
        raise ValueError(f"solutions/{topic}.py: {BEGIN} without {END}")
    return HEADER.format(topic=topic) + "".join(out)


def _track(enclosing: list, line: str) -> None:
    """Keep the stack of (indent, name) for the defs and classes around the current line."""
    m = _DEF.match(line)
    if m:
        indent = len(m.group(1) if m.group(1) is not None else m.group(3))
        while enclosing and enclosing[-1][0] >= indent:
            enclosing.pop()
        enclosing.append((indent, m.group(2) or m.group(4)))


def _name(enclosing: list, indent: str) -> str:
    """Dotted name (Class.method) of the defs around a block at this indentation."""
    names = [name for level, name in enclosing if level < len(indent)]
    return ".".join(names) or "this"


def expected(topic: str) -> str:
    return stub_source((BUILTIN["solutions"] / f"{topic}.py").read_text(encoding="utf-8"), topic)


def generate(dest: Path = BUILTIN["exercises"], topics=NAMES) -> list[Path]:
    """Write the stubs into `dest`; return the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in topics:
        path = dest / f"{topic}.py"
        path.write_text(expected(topic), encoding="utf-8")
        written.append(path)
    return written


def drift(dest: Path = BUILTIN["exercises"]) -> list[str]:
    """Topics whose file in `dest` differs from the generated stub."""
    return [t for t in NAMES if not (dest / f"{t}.py").is_file()
            or (dest / f"{t}.py").read_text(encoding="utf-8") != expected(t)]
