"""The class report's page (index.html): one self-contained file that opens from disk.

Charts are drawn with matplotlib as inline SVG (text kept as text); every chart has the table it
is drawn from beneath it, so the page reads without the pictures. No script, no stylesheet or
font from elsewhere: the page makes no request.

`stats(students)` is what the page shows, as data; `render(students)` the page. `students` is
{student: report} as results.json holds it (kata/classroom.py).
"""
from __future__ import annotations

import html
import io
from dataclasses import dataclass, field

from kata import topics
from kata.classroom import GRADED
from kata.results import Status

SHARED_SHOWN = 20  # unexplained failure groups listed, most shared first


@dataclass
class ClassStats:
    pass_rate: dict = field(default_factory=dict)   # {topic: (students passed, students)}
    mistakes: dict = field(default_factory=dict)    # {topic: {mistake ids (tuple): [student, ...]}}, most first
    titles: dict = field(default_factory=dict)      # {(topic, mistake ids): title}
    shared: list = field(default_factory=list)      # [(topic, test, message, [student, ...])], most shared first
    flagged: list = field(default_factory=list)     # [(student, topic, line, why)]
    unfinished: list = field(default_factory=list)  # [(student, topic or "", status, why)]


def owner(topic: str, mistake: str) -> tuple[str, str]:
    """(the topic whose catalog holds a mistake, its id there): a modules mistake that fails
    bias_redundancy (which builds its layers from the student's modules.py) is reported there as
    "modules/<id>" and belongs to modules."""
    home, _, plain = mistake.rpartition("/")
    return (home or topic), plain


def _test_base(name: str) -> str:
    return name.split("[")[0]


def stats(students: dict) -> ClassStats:
    s = ClassStats()
    n = len(students)
    for name in topics.NAMES:
        s.pass_rate[name] = (sum(r["topics"][name]["status"] == Status.PASSED.value for r in students.values()), n)
    mistakes: dict = {name: {} for name in topics.NAMES}
    shared: dict = {}
    for student, report in students.items():
        counted = set()
        # a topic's own causes first, then those another topic's tests show (bias_redundancy's of
        # modules): a mistake is counted once per student, under its own topic, and a "one of"
        # that holds a mistake already counted there is that mistake
        causes = [(name, cause) for name, entry in report["topics"].items() for cause in entry.get("causes", [])]
        causes.sort(key=lambda nc: any("/" in m for m in nc[1].get("mistakes") or [nc[1]["mistake"]]))
        for name, cause in causes:
            pairs = [owner(name, m) for m in cause.get("mistakes") or [cause["mistake"]]]
            home, ids = pairs[0][0], tuple(plain for _, plain in pairs)
            if any((home, (i,)) in counted for i in ids) or (home, ids) in counted:
                continue
            counted.add((home, ids))
            mistakes[home].setdefault(ids, []).append(student)
            s.titles[(home, ids)] = cause.get("title", ids[0])
        for name, entry in report["topics"].items():
            for failure in entry.get("unexplained", []):
                first = (failure.get("message") or "").strip().splitlines()[:1]
                key = (name, _test_base(failure["test"]), first[0] if first else "")
                if student not in shared.setdefault(key, []):
                    shared[key].append(student)
            for flag in entry.get("review", []):
                s.flagged.append((student, name, flag.get("line", "?"), flag.get("why", "")))
            stopped = entry["status"] in (Status.TIMED_OUT.value, Status.ERROR.value)
            if stopped and report.get("outcome", GRADED) == GRADED:  # else listed once, for the whole submission
                s.unfinished.append((student, name, entry["status"], entry.get("problem", "")))
        if report.get("outcome", GRADED) != GRADED:
            s.unfinished.append((student, "", report["outcome"], report.get("why", "")))
    s.mistakes = {name: dict(sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0])))
                  for name, found in mistakes.items()}
    s.shared = sorted(((t, test, msg, who) for (t, test, msg), who in shared.items() if len(who) > 1),
                      key=lambda row: (-len(row[3]), topics.NAMES.index(row[0]), row[1]))[:SHARED_SHOWN]
    return s


def mistake_counts(students: dict) -> dict:
    """{(topic, mistake id): number of students}, for the catalog's single mistakes and "one of" groups alike."""
    return {(name, "|".join(ids)): len(who) for name, found in stats(students).mistakes.items()
            for ids, who in found.items()}


# ---------------------------------------------------------------- drawing
def _svg(labels: list, values: list, xlabel: str, limit: float | None = None) -> str:
    """A horizontal bar chart as an inline <svg> element."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kata-class", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(labels) + 0.8))
        ax.barh(range(len(labels)), values, color="#4c72b0")
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        if limit is not None:
            ax.set_xlim(0, limit)
        else:  # counts of students: whole numbers
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # without the XML declaration and the DTD (which names a URL)


# ---------------------------------------------------------------- the page
def _paragraphs(text: str) -> str:
    """The catalog's explanations are wrapped at 100 columns: the page wraps them itself."""
    return "\n\n".join(" ".join(part.split()) for part in text.split("\n\n"))


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list, rows: list) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;max-width:100%}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top;white-space:pre-line}
th{background:#eee}svg{max-width:100%;height:auto}.none{color:#666}
/* a test's name is one long word: it may break anywhere, or the table would be wider than the page */
td{overflow-wrap:anywhere}"""


def render(students: dict) -> str:
    s = stats(students)
    n = len(students)
    parts = [f"<h1>Class report: makemore Part 3 kata</h1><p>{n} student{'s' * (n != 1)}.</p>"]

    parts.append("<h2>Pass rate per topic</h2>")
    rates = [(name, p, total) for name, (p, total) in s.pass_rate.items()]
    parts.append(_svg([r[0] for r in rates], [100 * r[1] / max(r[2], 1) for r in rates], "% of students passing", 100))
    parts.append(_table(["topic", "passed", "students", "pass rate"],
                        [(t, p, total, f"{100 * p / max(total, 1):.0f}%") for t, p, total in rates]))

    parts.append("<h2>Named mistakes, by topic</h2>")
    for name in topics.NAMES:
        found = s.mistakes[name]
        parts.append(f"<h3>{_e(name)}</h3>")
        if not found:
            parts.append('<p class="none">No named mistake.</p>')
            continue
        labels = [" / ".join(ids) for ids in found]
        parts.append(_svg(labels, [len(who) for who in found.values()], "students"))
        catalog = {m.id: m for m in topics.mistakes(name)}
        rows = []
        for ids, who in found.items():
            explain = "\n\n".join(_paragraphs(catalog[i].explain) for i in ids if i in catalog)
            rows.append((" / ".join(ids), s.titles[(name, ids)], len(who), explain, ", ".join(who)))
        parts.append(_table(["mistake", "title", "students", "explanation", "who"], rows))
    parts.append("<h2>Unexplained failures most shared</h2>")
    if s.shared:
        # the bars are numbered: a test's name and message are read in the table, not squeezed beside a bar
        labels = [f"#{k + 1} {t}" for k, (t, *_) in enumerate(s.shared)]
        parts.append(_svg(labels, [len(who) for *_, who in s.shared], "students"))
        parts.append(_table(["#", "topic", "test", "message", "students", "who"],
                            [(k + 1, t, test, msg, len(who), ", ".join(who))
                             for k, (t, test, msg, who) in enumerate(s.shared)]))
    else:
        parts.append('<p class="none">No unexplained failure is shared by two students or more.</p>')

    parts.append("<h2>Flagged for review</h2>")
    parts.append(_table(["student", "topic", "line", "why"], s.flagged) if s.flagged
                 else '<p class="none">Nothing flagged.</p>')
    parts.append("<h2>Crashed or timed out</h2>")
    parts.append(_table(["student", "topic", "status", "why"], [(st, t or "(whole submission)", status, why)
                                                                for st, t, status, why in s.unfinished])
                 if s.unfinished else '<p class="none">Every submission finished grading.</p>')
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Class report</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
