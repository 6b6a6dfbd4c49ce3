"""The whole verdict as one structure (`grader.py --report PATH`): what the scorecard, check(),
Gradescope's results.json and the class report render from.

    {"mode": "sandbox" | "process", "kata": "sha256:...", "torch": "2.13.0", "seed": 1234,
     "topics": {name: {"status", "score", "max_score", "tests_passed", "tests_total", "tests",
                       "causes": [{"mistake", "mistakes", "title", "tests"}],
                       "unexplained": [{"test", "message"}], "blocks", "review": [{"line", "why"}]}}}

No torch import here: a class report reads these files without grading anything.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from kata import topics
from kata.results import TopicResult


def content_hash() -> str:
    """sha256 of what decides a verdict and a diagnosis: the topic tests, the catalog (hints and
    mistakes) and the reference. A cached diagnosis is valid only for the same hash."""
    from kata.loader import BUILTIN, TESTS
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for folder, pattern in ((TESTS, "test_*.py"), (here / "hints", "*.toml"), (BUILTIN["solutions"], "*.py")):
        for path in sorted(folder.glob(pattern)) if folder.is_dir() else ():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def cause_entry(topic: str, cause) -> dict:
    """A cause as the report holds it: its mistake id (the first, when several behave alike), all
    of them, the catalog's title, and the failing tests it explains."""
    catalog = {m.id: m for m in topics.mistakes(topic)}
    titles = [catalog[m].title if m in catalog else m for m in cause.mistakes]
    title = titles[0] if len(titles) == 1 else "one of: " + "; ".join(titles)
    return {"mistake": cause.mistakes[0], "mistakes": list(cause.mistakes), "title": title,
            "tests": len(cause.tests), "test_names": list(cause.tests)}


def unexplained(r: TopicResult) -> list:
    """The failing tests no cause explains, in the tests' lesson order (their run order)."""
    explained = {name for c in r.causes for name in c.tests}
    return [t for t in r.tests if not t.passed and t.name not in explained]


def topic_entry(r: TopicResult) -> dict:
    from kata import scorecard
    rest = unexplained(r)
    return {
        "status": r.status.value, "score": r.score, "max_score": r.max_score,
        "tests_passed": r.n_passed, "tests_total": len(r.tests),
        "tests": [{"test": t.name, "passed": t.passed, "kind": t.kind} for t in r.tests],
        "problem": r.problem or r.missing or r.syntax_error or r.uses_solutions,
        "causes": [cause_entry(r.topic.name, c) for c in r.causes],
        "unexplained": [{"test": t.name, "message": t.text} for t in rest],
        "blocks": scorecard.block_count(r),
        "review": list(r.review),
    }


def build(results: dict, mode: str, seed: int) -> dict:
    from importlib.metadata import version
    return {"mode": mode, "kata": content_hash(), "torch": version("torch").split("+")[0], "seed": seed,
            "topics": {name: topic_entry(r) for name, r in results.items()}}


def write(path, data: dict) -> None:
    import json
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
