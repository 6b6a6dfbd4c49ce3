"""The workbook: notebooks/workbook.py, every cell of the notebook in jupytext's percent format
(one Python file that reads and diffs as code), and notebooks/workbook.ipynb, written from it.

    python -m kata.workbook                    # refresh the topic cells from solutions/, write the .ipynb
    python -m kata.workbook --check            # exit 1 if either file is not what would be written
    python -m kata.workbook --reference PATH   # write the reference version (solution bodies), as .ipynb

The hand-written cells (the lecture's text, the set-up, the data and the experiments) are edited
in notebooks/workbook.py. The cells marked `kata={"kind": "spec" | "topic" | "check"}` are
generated from solutions/: a topic's spec (its docstrings as markdown), its stub (as exercises/ has
it, kata/generate.py) and its check call. A topic that has no cells yet gets them before the next
topic's. An experiment cell starts with `if ready(...)`: until the topics it calls are done, it
prints one line saying which to finish; inside, `yours()` hands the lecture's code (kata/mlp.py,
kata/deepnet.py) your functions and classes, those of the topics it waited for and no others.

`ready`, `yours` and `show` are what of this module runs inside the notebook.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import types
from pathlib import Path

from kata import REPOSITORY, generate, readiness, topics
from kata.loader import BUILTIN, ROOT, show_path

SOURCE = ROOT / "notebooks" / "workbook.py"
NOTEBOOK = ROOT / "notebooks" / "workbook.ipynb"
GENERATED = ("spec", "topic", "check")  # the kinds of cell written from solutions/
_CELL_ID = {"spec": "{topic}-spec", "topic": "{topic}-code", "check": "{topic}-check"}


# ---------------------------------------------------------------------------------------------
# in the notebook: is a topic done enough for an experiment to call it?


def check_call(topic: str) -> str:
    """The check cell's call, e.g. check("modules", Linear, BatchNorm1d, Tanh)."""
    return f'check("{topic}", {", ".join(topics.get(topic).names)})'


def problem(topic: str, namespace: dict) -> str:
    """Why `topic` is not ready for an experiment ('' when it is): a name not defined, a stub that
    still raises NotImplementedError, or a quick call (kata/readiness.py) that fails or returns a
    wrong value."""
    names = topics.get(topic).names
    missing = [name for name in names if name not in namespace]
    if missing:
        return (f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not defined: run the {topic} "
                f"cell, then {check_call(topic)}")
    used = [n for t in (topic, *topics.get(topic).uses) for n in topics.get(t).names if n in namespace]
    found = readiness.problem(topic, types.SimpleNamespace(**{n: namespace[n] for n in used}))
    if found is None:
        return ""
    return f"{check_call(topic)} says what is left" if found[1] == "todo" else \
        f"{found[1]}; {check_call(topic)} says what is left"


_waited: set[str] = set()  # the topics the running experiment waited for (its ready(...) call)


def ready(*needed: str) -> bool:
    """True when every topic in `needed` is done enough for the experiment that follows. Otherwise
    print one line naming the earliest unfinished one in the curriculum, and return False."""
    namespace = vars(sys.modules["__main__"])  # the notebook's names, where check() looks too
    for topic in sorted(needed, key=topics.NAMES.index):
        why = problem(topic, namespace)
        if why:
            print(f"finish {topic} first: {why}")
            return False
    _waited.clear()
    _waited.update(t for topic in needed for t in (topic, *topics.get(topic).uses))
    return True


def yours() -> types.SimpleNamespace:
    """Your functions and classes, as the lecture's code calls them (`code.batchnorm_forward`,
    `code.Linear`): those of the topics the last ready(...) waited for. A topic it did not wait for
    is left out, so an experiment that would call it fails here rather than on an unfinished stub."""
    namespace = vars(sys.modules["__main__"])
    return types.SimpleNamespace(**{name: namespace[name] for t in topics.TOPICS if t.name in _waited
                                    for name in t.names if name in namespace})


def experiment_after(topic: str) -> str:
    """The title of the experiment that follows `topic`'s check cell in notebooks/workbook.py ('' when
    there is none, or no workbook beside an installed kata)."""
    try:
        text = SOURCE.read_text(encoding="utf-8")
    except OSError:
        return ""
    after = text.partition(f'id="{topic}-check"')[2].partition(' kata={"kind": "spec"')[0]
    found = re.search(r"^# ### Experiment: (.+)$", after, re.M)
    return found.group(1).strip() if found else ""


def show(*objects) -> None:
    """Print the source of the kata's code that an experiment runs (the lecture's MLP, its loop)."""
    for obj in objects:
        print(inspect.getsource(obj))


# ---------------------------------------------------------------------------------------------
# a topic's spec as markdown


_LABEL = re.compile(r"^(Formula[^:]*|Shape|Lecture value|Note):[ \t]*(.*)$", re.S)
_CODE_LABELS = ("Formula", "Shape")  # formulas and shapes keep their line breaks and spacing


def prose(text: str) -> str:
    """Docstring text as markdown: every `*` and `_` escaped (`(1 - m)**k` and `__call__` are not
    emphasis), except inside backtick spans, which markdown shows verbatim."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # the even parts lie outside backticks
        parts[i] = re.sub(r"[*_]", lambda m: "\\" + m.group(0), parts[i])
    return "".join(parts)


def _block(label: str, text: str) -> str:
    """A Formula or Shape paragraph as a text block; continuation lines lose the indent that
    aligned them under the text after the label."""
    first, *rest = text.split("\n")
    indent = min((len(line) - len(line.lstrip()) for line in rest if line.strip()), default=0)
    cut = min(indent, len(label) + 2)
    return "\n".join([f"**{label}**", "```text", first, *(line[cut:] for line in rest), "```"])


def docstring_markdown(doc: str) -> str:
    """Summary, Formula, Shape, Lecture value and Note of one docstring, as markdown."""
    out = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        m = _LABEL.match(paragraph)
        if m and m.group(1).startswith(_CODE_LABELS):
            out.append(_block(m.group(1), m.group(2)))
        elif m:
            out.append(f"**{m.group(1)}:** {prose(m.group(2))}")
        else:
            out.append(prose(paragraph))
    return "\n\n".join(out)


def _signature(node, lines: list[str]) -> str:
    """`name(args)` as written in the source (ast.unparse would write 1e-5 as 1e-05): the def's
    lines up to the one that ends in a colon."""
    header = []
    for line in lines[node.lineno - 1:]:
        header.append(line.strip())
        if line.rstrip().endswith(":"):
            break
    text = re.sub(r"^(?:async\s+)?def\s+", "", " ".join(header)).rstrip(":").strip()
    return re.sub(r"\s*->.*$", "", text).replace("( ", "(").replace(" )", ")")


def spec_markdown(topic: str, solution: str) -> str:
    """The markdown cell before a topic's code: its title, module docstring and each function's or
    class's docstring, and how to check it."""
    t = topics.get(topic)
    tree, lines = ast.parse(solution), solution.splitlines()
    number = topics.NAMES.index(topic) + 1
    intro = re.sub(r"^Topic \d+, \w+: ", "", inspect.cleandoc(ast.get_docstring(tree, clean=False) or ""))
    intro = intro[:1].upper() + intro[1:]
    intro = re.sub(r"See kata/notes/(\w+)\.md", r'See `explain("\1")`', intro)  # it prints that file
    parts = [f"## {number}. `{topic}`: {t.section}", "\n\n".join(prose(p) for p in intro.split("\n\n"))]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            args = re.sub(r"^__init__\(self,?\s*", "", _signature(init, lines) if init else "__init__(self)")
            heading = f"### class `{node.name}({args}`"  # the arguments the caller passes
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            heading = f"### `{_signature(node, lines)}`"
        else:
            continue
        parts += [heading, docstring_markdown(ast.get_docstring(node, clean=False) or "")]
    parts.append(f"Replace each `raise NotImplementedError` in the cell below with your code and run it, then "
                 f"the check cell after it. Stuck? `hint(\"{topic}\")` (one level deeper each call); the "
                 f"viewer questions: `explain(\"{topic}\")`.")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# a topic's code cell


def reference_source(solution: str) -> str:
    """The solution with its BEGIN/END SOLUTION marker lines taken out (the bodies stay)."""
    return "".join(line for line in solution.splitlines(keepends=True)
                   if line.strip() not in (generate.BEGIN, generate.END))


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def notebook_code(module_text: str) -> str:
    """A topic module's text (stub or reference) as a notebook cell: the module docstring and the
    exercise file's header go (the markdown cell above has them), each docstring shrinks to its
    summary, and a relative import becomes a comment (those classes are defined in an earlier cell)."""
    tree, lines = ast.parse(module_text), module_text.splitlines(keepends=True)
    edits = []  # (first line index, end line index, replacement lines)
    if tree.body and _is_docstring(tree.body[0]):
        edits.append((tree.body[0].lineno - 1, tree.body[0].end_lineno, []))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            names = " and ".join(a.asname or a.name for a in node.names)
            edits.append((node.lineno - 1, node.end_lineno, [f"# {names}: your classes, from the {node.module} cell\n"]))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and _is_docstring(node.body[0]):
            doc = node.body[0]
            summary = " ".join(inspect.cleandoc(doc.value.value).split("\n\n")[0].split())
            edits.append((doc.lineno - 1, doc.end_lineno, [f'{" " * doc.col_offset}"""{summary}"""\n']))
    for start, end, replacement in sorted(edits, reverse=True):
        lines[start:end] = replacement
    text = "".join(lines)
    text = re.sub(r"\A(?:#[^\n]*\n|\s*\n)*", "", text)  # the exercise file's header comment
    text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text).strip() + "\n"
    ast.parse(text)  # a summary with quotes in it must not break the cell
    return text


def topic_code(topic: str, solution: str, reference: bool) -> str:
    """The stub (kata/generate.py's, as exercises/ has it) or the reference, as a cell."""
    return notebook_code(reference_source(solution) if reference else generate.stub_source(solution, topic, "notebook"))


# ---------------------------------------------------------------------------------------------
# the cells: notebooks/workbook.py, read and written with jupytext


def _jupytext():
    try:
        import jupytext
    except ModuleNotFoundError:
        raise SystemExit('the workbook is kept as jupytext\'s percent format: pip install -e ".[notebook]"') from None
    return jupytext


def read_cells(text: str) -> list[dict]:
    """The cells of a percent-format text: {"cell_type", "source", "metadata"}."""
    return [{"cell_type": c.cell_type, "source": c.source, "metadata": dict(c.metadata)}
            for c in _jupytext().reads(text, fmt="py:percent").cells]


def generated_source(kind: str, topic: str, solution: str, reference: bool = False) -> str:
    if kind == "spec":
        return spec_markdown(topic, solution)
    if kind == "topic":
        return topic_code(topic, solution, reference).rstrip("\n")
    return check_call(topic)


def _generated_cells(topic: str, solution: str, reference: bool) -> list[dict]:
    return [{"cell_type": "markdown" if kind == "spec" else "code",
             "source": generated_source(kind, topic, solution, reference),
             "metadata": {"id": _CELL_ID[kind].format(topic=topic), "kata": {"kind": kind, "topic": topic}}}
            for kind in GENERATED]


def install_line(text: str) -> str:
    """`text` with its pip install address set to the kata's one (kata.REPOSITORY)."""
    return re.sub(r'git\+[^"\n]*', lambda _: f"git+{REPOSITORY}", text)


def refresh(cells: list[dict], solutions: Path = BUILTIN["solutions"], reference: bool = False) -> list[dict]:
    """The cells with every generated one written again from `solutions` and the set-up cell's
    install address from kata.REPOSITORY; a topic with no cells yet gets its spec, code and check
    cells before the next topic's spec (or the last cell)."""
    out = []
    for cell in cells:
        kata = cell["metadata"].get("kata", {})
        if kata.get("kind") == "setup":
            cell = {**cell, "source": install_line(cell["source"])}
        if kata.get("kind") in GENERATED and kata.get("topic") in topics.NAMES:
            solution = (solutions / f"{kata['topic']}.py").read_text(encoding="utf-8")
            cell = {**cell, "source": generated_source(kata["kind"], kata["topic"], solution, reference)}
        out.append(cell)
    present = {c["metadata"].get("kata", {}).get("topic") for c in out}
    for topic in topics.NAMES:
        if topic in present:
            continue
        following = [t for t in topics.NAMES[topics.NAMES.index(topic) + 1:] if t in present]
        at = next((i for i, c in enumerate(out) if following and c["metadata"].get("id") == f"{following[0]}-spec"),
                  len(out) - 1)
        solution = (solutions / f"{topic}.py").read_text(encoding="utf-8")
        out[at:at] = _generated_cells(topic, solution, reference)
        present.add(topic)
    return out


def render_source(solutions: Path = BUILTIN["solutions"], source: Path | None = None) -> str:
    """notebooks/workbook.py as `python -m kata.workbook` writes it: its topic cells refreshed."""
    jupytext, nbformat = _jupytext(), __import__("nbformat")
    cells = refresh(read_cells(Path(source or SOURCE).read_text(encoding="utf-8")), solutions)
    nb = nbformat.v4.new_notebook(cells=[
        (nbformat.v4.new_markdown_cell if c["cell_type"] == "markdown" else nbformat.v4.new_code_cell)(
            c["source"], metadata=c["metadata"]) for c in cells])
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "-all"}  # no header naming jupytext's version
    return jupytext.writes(nb, fmt="py:percent")


def render(solutions: Path = BUILTIN["solutions"], reference: bool = False, source: Path | None = None) -> str:
    """The notebook file's text: nbformat 4.5, no outputs, keys sorted and indent 1 as Jupyter writes;
    with reference=True the topic cells hold the solution bodies."""
    cells = refresh(read_cells(Path(source or SOURCE).read_text(encoding="utf-8")), solutions, reference)
    notebook = {
        "cells": [_ipynb_cell(c) for c in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _ipynb_cell(cell: dict) -> dict:
    """One .ipynb cell: its id and `kata` metadata from the percent file (the tests find check and
    experiment cells by them), without jupytext's layout keys."""
    meta = cell["metadata"]
    if "id" not in meta:
        raise ValueError(f"a cell of {show_path(SOURCE)} has no id=\"...\" on its # %% line:\n{cell['source'][:200]}")
    out = {"cell_type": cell["cell_type"], "id": meta["id"], "metadata": {"kata": meta["kata"]} if "kata" in meta else {},
           "source": cell["source"].rstrip("\n").splitlines(keepends=True)}
    if cell["cell_type"] == "code":
        out.update(execution_count=None, outputs=[])
    return out


def needs(code: str) -> tuple[str, ...]:
    """The topics an experiment cell waits for: the arguments of its `if ready(...)`."""
    tree = ast.parse(re.sub(r"^%.*$", "", code, flags=re.M))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ready"]
    return tuple(a.value for call in calls for a in call.args if isinstance(a, ast.Constant))


def write(path: Path | None = None, reference: bool = False, solutions: Path = BUILTIN["solutions"]) -> Path:
    """Write the notebook (default notebooks/workbook.ipynb, the stub version) and return its path;
    the default also refreshes notebooks/workbook.py first."""
    if path is None and not reference:
        SOURCE.write_text(render_source(solutions), encoding="utf-8")
    path = Path(path or NOTEBOOK)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(solutions, reference), encoding="utf-8")
    return path


def drift(path: Path | None = None, solutions: Path = BUILTIN["solutions"]) -> bool:
    """True when notebooks/workbook.py's topic cells, or the notebook at `path` (default
    notebooks/workbook.ipynb), are not what would be written from `solutions`."""
    path = Path(path or NOTEBOOK)
    return SOURCE.read_text(encoding="utf-8") != render_source(solutions) or not path.is_file() \
        or path.read_text(encoding="utf-8") != render(solutions)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kata.workbook", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the notebook differs from what would be written")
    p.add_argument("--reference", type=Path, metavar="PATH", help="write the reference version (solution bodies) here")
    args = p.parse_args(argv)
    if args.check:
        if drift():
            print(f"{show_path(NOTEBOOK)} is out of date with {show_path(SOURCE)} or solutions/: run python -m kata.workbook")
            return 1
        print(f"{show_path(NOTEBOOK)} is up to date")
        return 0
    path = write(args.reference, reference=True) if args.reference else write()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
