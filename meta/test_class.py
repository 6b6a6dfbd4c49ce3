"""Grading a class (kata/classroom.py, kata/classpage.py): a synthetic class whose mistakes were
planted from the catalog, resuming, a Gradescope export, and the page in a real browser.

The synthetic class: CLASS_SIZE students, each the reference with 0 to 3 catalogued mistakes
(kata.catalog.apply), at most one per topic (so at most one per function), plus one student whose
code hangs, one whose code crashes its learner process, one with a syntax error and one that tries
a forgery. Expected points and statuses come from what was planted, never from a grading run;
the one exception is which modules mistakes also fail bias_redundancy (which builds its layers
from the student's modules.py): that is asked of the topic tests directly (kata.catalog.run_tests).
"""
import csv
import html
import html.parser
import json
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grader
from kata import catalog, classpage, classroom, gradescope, topics
from kata.loader import BUILTIN, ROOT
from kata.scorecard import Out
from kata.testing import base_seed

pytestmark = pytest.mark.timeout(600)

CLASS_SIZE = 40  # the example has 60; 40 keep the class under 90 s on 2 cores with --jobs 2
JOBS = 2

SPECIAL = {  # student: (topic, the file's text appended to the reference, the status it must get)
    "zz-hangs": ("batchnorm", "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    while True:\n        pass\n",
                 "timed out"),
    "zz-crashes": ("kaiming", "def kaiming_std(fan_in, nonlinearity='tanh'):\n    import ctypes\n"
                              "    return ctypes.string_at(0)\n", None),
    "zz-syntax": ("running_stats", "def ema_update(running, batch_stat, momentum=0.001:\n    return running\n",
                  "syntax error"),
    "zz-forges": ("no_grad", "import _pytest.reports\n"
                             "_made = _pytest.reports.TestReport.from_item_and_call.__func__\n"
                             "def _passed(cls, item, call):\n"
                             "    report = _made(cls, item, call)\n"
                             "    report.outcome, report.longrepr = 'passed', None\n"
                             "    return report\n"
                             "_pytest.reports.TestReport.from_item_and_call = classmethod(_passed)\n"
                             "def split_loss(forward, X, Y):\n    return 0.0\n", None),
}


def reference(topic: str) -> str:
    return (BUILTIN["solutions"] / f"{topic}.py").read_text(encoding="utf-8")


def plantable(topic: str) -> list:
    """Single mistakes the diagnosis names alone: every one the catalog does not declare
    indistinguishable from another (`same_as`, either way); `python -m kata.catalog` checks that
    each of them, graded alone, is named as itself and nothing else (meta/test_kata.py)."""
    alike = {m.same_as for m in topics.mistakes(topic)} | {m.id for m in topics.mistakes(topic) if m.same_as}
    return [m for m in topics.mistakes(topic) if m.id not in alike]


def write_student(folder: Path, texts: dict, layout: int) -> None:
    """The twelve topic files in one of three layouts: flat, in a subfolder, or split across two."""
    for k, (topic, text) in enumerate(sorted(texts.items())):
        where = folder / ("" if layout == 0 else "work" if layout == 1 else ("a" if k % 2 else "b/c"))
        where.mkdir(parents=True, exist_ok=True)
        (where / f"{topic}.py").write_text(text, encoding="utf-8")
    (folder / "notes.txt").write_text("not a topic file\n", encoding="utf-8")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The class folder and what was planted: {student: {topic: mistake}}."""
    rng = random.Random(base_seed() * 7919 + 15)
    root = tmp_path_factory.mktemp("class") / "submissions"
    plan = {}
    for k in range(CLASS_SIZE):
        student = f"s{k:03d}"
        chosen = rng.sample(topics.NAMES, rng.randint(0, 3))
        if "modules" in chosen and "bias_redundancy" in chosen:
            # bias_redundancy calls the student's Linear and BatchNorm1d: a mistake there too is two
            # mistakes in one call, and may hide the passing tests that tell two of its mistakes apart
            chosen.remove("bias_redundancy")
        plan[student] = {t: rng.choice(plantable(t)) for t in chosen}
        texts = {t: reference(t) for t in topics.NAMES}
        for t, m in plan[student].items():
            texts[t] = catalog.apply(m, texts[t])
        write_student(root / student, texts, k % 3)
    for student, (topic, text, _) in SPECIAL.items():
        texts = {t: reference(t) for t in topics.NAMES}
        texts[topic] += "\n" + text
        write_student(root / student, texts, 0)
    return root, plan


@pytest.fixture(scope="module")
def breaks_dependent(planted, tmp_path_factory):
    """{modules mistake id: True when bias_redundancy's tests fail with it}, from the topic tests."""
    _, plan = planted
    ids = sorted({m.id for mistakes in plan.values() for t, m in mistakes.items() if t == "modules"})
    if not ids:
        return {}
    work = tmp_path_factory.mktemp("dependent")
    by_id = {m.id: m for m in topics.mistakes("modules")}
    folders = [catalog.build(by_id[i], work / f"m_{i}") for i in ids]
    verdicts = catalog.run_tests([ROOT / "tests" / "test_bias_redundancy.py"], folders, work,
                                 topics_of=["bias_redundancy"] * len(folders))
    return {i: bool(verdicts[f"m_{i}"].failed) for i in ids}


@pytest.fixture(scope="module")
def graded(planted, tmp_path_factory):
    root, _ = planted
    out = tmp_path_factory.mktemp("report")
    first = classroom.grade_class(root, out, JOBS, progress=False)
    second = classroom.grade_class(root, out, JOBS, progress=False)
    return out, first, second


def expected_points(plan: dict, student: str, breaks: dict) -> dict:
    points = {t: topics.get(t).points for t in topics.NAMES}
    if student in SPECIAL:
        points[SPECIAL[student][0]] = 0
        return points
    for t, m in plan[student].items():
        points[t] = 0
        if t == "modules" and breaks[m.id]:
            points["bias_redundancy"] = 0
    return points


def read_grades(out: Path) -> dict:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_grades_csv_has_the_planted_points_and_statuses_of_every_student(planted, graded, breaks_dependent):
    _, plan = planted
    out, first, _ = graded
    rows = read_grades(out)
    assert set(rows) == set(plan) | set(SPECIAL), f"grades.csv students: {sorted(rows)}"
    wrong = []
    for student, row in rows.items():
        want = expected_points(plan, student, breaks_dependent)
        got = {t: int(row[t]) for t in topics.NAMES}
        if got != want or int(row["total"]) != sum(want.values()):
            wrong.append(f"{student}: planted {sorted((t, m.id) for t, m in plan.get(student, {}).items())}, "
                         f"points {got} (total {row['total']}), expected {want}")
        for t in topics.NAMES:
            status = row[f"{t} status"]
            planted_here = t in plan.get(student, {}) or (student in SPECIAL and SPECIAL[student][0] == t)
            if not planted_here and want[t] and status != "passed":
                wrong.append(f"{student}: {t} status {status!r}, expected 'passed' (nothing planted)")
            if planted_here and student not in SPECIAL and status != "failing":
                wrong.append(f"{student}: {t} status {status!r}, expected 'failing' ({plan[student][t].id} planted)")
    for student, (topic, _, status) in SPECIAL.items():
        got = rows[student][f"{topic} status"]
        if (status and got != status) or got == "passed":
            wrong.append(f"{student}: {topic} status {got!r}, expected {status or 'not passed'!r}")
    assert not wrong, "\n".join(wrong[:20])
    assert all(r["outcome"] == classroom.GRADED for r in first.students.values()), \
        [(s, r["outcome"], r["why"]) for s, r in first.students.items() if r["outcome"] != classroom.GRADED]


def test_the_crash_and_the_hang_are_reported_for_their_topic_only(graded):
    out, _, _ = graded
    report = json.loads((out / "results.json").read_text())["students"]
    page = classpage.stats(report)
    unfinished = {(s, t) for s, t, _, _ in page.unfinished}
    assert ("zz-hangs", "batchnorm") in unfinished, f"the hang is not listed as unfinished: {page.unfinished}"
    assert report["zz-crashes"]["topics"]["kaiming"]["status"] != "passed"
    assert report["zz-crashes"]["topics"]["modules"]["status"] == "passed", "a crash reached another topic"


def test_results_json_holds_each_students_report_structure(graded):
    out, first, _ = graded
    data = json.loads((out / "results.json").read_text())
    assert set(data["students"]) == set(first.students)
    for student, report in data["students"].items():
        assert {"mode", "kata", "torch", "seed", "topics", "outcome"} <= set(report), (student, sorted(report))
        assert list(report["topics"]) == list(topics.NAMES)
        for name, entry in report["topics"].items():
            assert {"status", "score", "max_score", "causes", "unexplained", "blocks", "review"} <= set(entry), \
                (student, name, sorted(entry))


def test_the_reports_mistake_counts_are_the_planted_ones(planted, graded):
    """Each planted mistake counted once, under its own topic (a modules mistake that fails
    bias_redundancy too is counted under modules), and nothing else."""
    _, plan = planted
    out, _, _ = graded
    students = json.loads((out / "results.json").read_text())["students"]
    want: dict = {}
    for mistakes in plan.values():
        for t, m in mistakes.items():
            want[(t, m.id)] = want.get((t, m.id), 0) + 1
    got = {k: v for k, v in classpage.mistake_counts(students).items()}
    assert got == want, f"counted {sorted(got.items())}\nplanted {sorted(want.items())}"


def test_a_second_run_grades_nothing_new_and_writes_the_same_grades(graded, planted, tmp_path):
    out, first, second = graded
    root, plan = planted
    distinct = len({frozenset((t, m.id) for t, m in mistakes.items()) for mistakes in plan.values()}) + len(SPECIAL)
    assert first.graded == distinct, f"{first.graded} graded, expected {distinct}: identical submissions once each"
    assert second.graded == 0, f"the rerun graded {second.graded} submissions, expected none"
    assert second.students == first.students
    changed = tmp_path / "class"
    shutil.copytree(root, changed)
    shutil.copytree(out / "store", tmp_path / "out" / "store")
    target = next((changed / "s000").rglob("saturation.py"))
    target.write_text(target.read_text() + "\n# edited\n")
    third = classroom.grade_class(changed, tmp_path / "out", JOBS, progress=False)
    assert third.graded == 1, f"one changed submission, {third.graded} graded"


# ---------------------------------------------------------------- the page's numbers, from reports written here
def a_report(**changes) -> dict:
    """A report (kata/report.py's structure) in which every topic passes, but for `changes`."""
    topics_ = {t: {"status": "passed", "score": topics.get(t).points, "max_score": topics.get(t).points,
                   "tests_passed": 3, "tests_total": 3, "tests": [], "problem": "", "causes": [],
                   "unexplained": [], "blocks": 0, "review": []} for t in topics.NAMES}
    for t, entry in changes.items():
        topics_[t].update(status="failing", score=0, **entry)
    return {"mode": "process", "seed": 0, "topics": topics_, "outcome": "graded", "why": ""}


def cause(mistake: str, title: str = "t", tests: int = 2) -> dict:
    return {"mistake": mistake, "mistakes": [mistake], "title": title, "tests": tests}


def test_a_mistake_is_counted_once_under_its_own_topic_with_its_catalog_entry():
    modules_mistake = topics.mistakes("modules")[0]
    batchnorm_mistake = topics.mistakes("batchnorm")[0]
    students = {
        # a modules mistake that bias_redundancy's failures are attributed to (the diagnosis names it
        # there as "modules/<id>"): one count, under modules
        "ann": a_report(modules={"causes": [cause(modules_mistake.id)]},
                        bias_redundancy={"causes": [cause(f"modules/{modules_mistake.id}")]}),
        "ben": a_report(bias_redundancy={"causes": [cause(f"modules/{modules_mistake.id}")]}),
        "cat": a_report(batchnorm={"causes": [cause(batchnorm_mistake.id)],
                                   "review": [{"line": 7, "why": "reaches torch._C"}]}),
        "dan": {**classroom.failed_report("grading took longer than the limit"), "outcome": classroom.TIMED_OUT,
                "why": "grading took longer than the limit"},
    }
    assert classpage.mistake_counts(students) == {("modules", modules_mistake.id): 2,
                                                  ("batchnorm", batchnorm_mistake.id): 1}
    page = classpage.render(students)
    assert not validate(page), validate(page)[:5]
    for text in (modules_mistake.explain.splitlines()[0], batchnorm_mistake.explain.splitlines()[0],
                 "reaches torch._C", "grading took longer than the limit"):
        assert html.escape(text, quote=True) in page, f"the page does not show {text!r}"
    stats = classpage.stats(students)
    assert stats.mistakes["modules"][(modules_mistake.id,)] == ["ann", "ben"]
    assert stats.flagged == [("cat", "batchnorm", 7, "reaches torch._C")]
    assert stats.pass_rate["modules"] == (2, 4) and stats.pass_rate["bias_redundancy"] == (1, 4)
    rows = {r["student"]: r for r in classroom.grades_rows(students)}
    assert rows["cat"]["flags"] == "batchnorm:7 reaches torch._C" and rows["cat"]["total"] == 85
    assert rows["dan"]["flags"].startswith("timed out:") and rows["dan"]["total"] == 0


def test_unexplained_failures_are_grouped_by_test_and_message_across_students():
    fail = {"unexplained": [{"test": "test_x[1]", "message": "got 1, expected 2\nmore"},
                            {"test": "test_x[2]", "message": "got 1, expected 2\nother"}]}
    students = {"a": a_report(kaiming=fail), "b": a_report(kaiming=fail), "c": a_report(kaiming={
        "unexplained": [{"test": "test_x[1]", "message": "got 3, expected 2"}]})}
    shared = classpage.stats(students).shared
    assert shared == [("kaiming", "test_x", "got 1, expected 2", ["a", "b"])], shared


def test_ctrl_c_keeps_what_was_graded_and_a_rerun_grades_the_rest(tmp_path):
    import signal
    import time
    root = tmp_path / "class"
    for k in range(6):
        texts = {t: reference(t) for t in topics.NAMES}
        texts["saturation"] += f"\n# student {k}\n"  # six different submissions
        write_student(root / f"s{k}", texts, 0)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "grader.py"), "--class", str(root), "--out", str(out),
                             "--jobs", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 200
    while len(list((out / "store").glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, f"exit {proc.returncode}: {output[-1500:]}"
    kept = list((out / "store").glob("*.json"))
    assert 2 <= len(kept) < 6, f"{len(kept)} results kept"
    for path in kept:
        assert json.loads(path.read_text())["outcome"] == classroom.GRADED, path
    time.sleep(0.5)
    assert not running("kata.classroom\0--worker"), "a grading worker outlived the interrupted run"
    rerun = classroom.grade_class(root, out, JOBS, progress=False)
    assert rerun.graded == 6 - len(kept), f"{len(kept)} were kept, the rerun graded {rerun.graded}"


# ---------------------------------------------------------------- limits of one submission
def running(mark: str) -> list:
    """Processes whose command line holds `mark`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


DAEMON = "\nimport os\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{mark}'])\n"


def test_a_submission_past_its_limit_is_stopped_with_what_it_started(tmp_path):
    """On a warm worker: a daemon started at import, then a hang; the limit stops both."""
    mark = f"{os.getpid()}.5151"
    impl = tmp_path / "impl"
    shutil.copytree(BUILTIN["solutions"], impl)
    (impl / "no_grad.py").write_text(reference("no_grad") + DAEMON.format(mark=mark))
    (impl / "batchnorm.py").write_text(reference("batchnorm") + "\n" + SPECIAL["zz-hangs"][1])
    task = {"key": "k", "store": str(tmp_path / "store"), "timeout": 3.0, "limit": 4.0,
            "files": {t: str(impl / f"{t}.py") for t in topics.NAMES}}
    done = []
    classroom.grade_all([task], 1, on_done=lambda task, outcome: done.append(outcome))
    entry = classroom.Store(tmp_path / "store").get("k")
    assert done == [classroom.TIMED_OUT] and "4 s" in entry["why"], (done, entry and entry["why"])
    assert all(e["score"] == 0 and e["status"] == "error" for e in entry["report"]["topics"].values())
    assert not running(mark), "a process the submission started outlived its limit"


def test_a_grading_child_that_dies_is_reported_as_crashed_with_its_last_error(tmp_path):
    files = {t: str(BUILTIN["solutions"] / f"{t}.py") for t in topics.NAMES}
    entry = classroom.grade_one(files, timeout="soon", limit=60)  # not a number: the grading side fails
    assert entry["outcome"] == classroom.CRASHED, entry
    assert "exit status 70" in entry["why"] and "ValueError" in entry["why"], entry["why"]


def test_a_submission_that_fills_memory_fails_that_topic_only(tmp_path):
    impl = tmp_path / "impl"
    shutil.copytree(BUILTIN["solutions"], impl)
    (impl / "saturation.py").write_text(reference("saturation") + "\n_hog = []\n"
                                        "def saturation_fraction(h, threshold=0.99):\n"
                                        "    while True:\n        _hog.append(bytearray(1 << 26))\n")
    files = {t: str(impl / f"{t}.py") for t in topics.NAMES}
    entry = classroom.grade_one(files, timeout=3.0, limit=120, memory=4 << 30)
    assert entry["outcome"] == classroom.GRADED, entry["why"]
    statuses = {t: e["status"] for t, e in entry["report"]["topics"].items()}
    assert statuses["saturation"] != "passed" and statuses["kaiming"] == "passed", statuses


def test_processes_a_submission_starts_are_stopped_with_it(tmp_path):
    mark = f"{os.getpid()}.4242"
    impl = tmp_path / "impl"
    shutil.copytree(BUILTIN["solutions"], impl)
    (impl / "kaiming.py").write_text(reference("kaiming") + DAEMON.format(mark=mark))
    entry = classroom.grade_one({t: str(impl / f"{t}.py") for t in topics.NAMES}, timeout=3.0, limit=120)
    assert entry["outcome"] == classroom.GRADED, entry["why"]
    assert not running(mark), "a process the submission started still runs"


# ---------------------------------------------------------------- inputs and privacy
def test_a_zip_of_the_class_folder_gives_the_same_students(tmp_path):
    root = tmp_path / "myclass"
    write_student(root / "ann", {"batchnorm": reference("batchnorm")}, 1)
    write_student(root / "ben", {"kaiming": reference("kaiming")}, 2)
    archive = shutil.make_archive(str(tmp_path / "myclass"), "zip", tmp_path, "myclass")
    found = classroom.discover(Path(archive), tmp_path / "work")
    assert [(s.student, sorted(s.files)) for s in found] == [("ann", ["batchnorm"]), ("ben", ["kaiming"])]


def test_anonymize_leaves_no_student_id_in_any_output(tmp_path):
    root = tmp_path / "names"
    for name in ("alice_smith", "bob_jones"):
        write_student(root / name, {t: reference(t) for t in topics.NAMES}, 0)
    out = tmp_path / "out"
    run = classroom.grade_class(root, out, JOBS, anonymize=True, progress=False)
    assert sorted(run.students) == ["student-1", "student-2"], sorted(run.students)
    for name in ("grades.csv", "results.json", "index.html"):
        text = (out / name).read_text()
        assert "alice" not in text and "bob" not in text, f"{name} names a student"


def test_class_with_a_path_that_does_not_exist_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "grader.py"), "--class", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "neither a folder nor a zip" in done.stderr, (done.returncode, done.stderr)


def test_a_worker_that_cannot_start_fails_the_grader_not_the_students(tmp_path, monkeypatch, capsys):
    write_student(tmp_path / "class" / "ann", {"batchnorm": reference("batchnorm")}, 0)
    monkeypatch.setattr(classroom.Worker, "COMMAND", ("-c", "raise SystemExit(5)"))
    args = grader.parse(["--class", str(tmp_path / "class"), "--out", str(tmp_path / "out")])
    code = classroom.main(args, Out())
    assert code == 3 and "could not start (exit status 5)" in capsys.readouterr().err, code
    assert not (tmp_path / "out" / "grades.csv").exists(), "no grades when nothing could be graded"


# ---------------------------------------------------------------- the export form
EXPORT_CASES = {  # student: {topic: text}; topics not named are the reference
    "e-clean": {},
    "e-mistake": {"batchnorm": catalog.apply(plantable("batchnorm")[0], reference("batchnorm"))},
    "e-syntax": {"fold_batchnorm": "def fold_batchnorm(W, b:\n"},
    "e-missing": {"zero_init": None},
}


TEMP_FOLDER = re.compile(r"/tmp/[A-Za-z0-9_./-]*/(?=[a-z_]+\.py)")  # where a route copied the files it graded


def ruby_yaml(records: dict) -> str:
    """submission_metadata.yml as Gradescope's export writes it: Ruby symbol keys, a BigDecimal score."""
    import yaml
    lines = []
    for folder, (sid, score, results) in records.items():
        lines += [f"{folder}:", "  :submitters:", f"  - :name: Student {sid}", f"    :sid: {sid}",
                  f"    :email: {sid}@example.edu", "  :created_at: 2026-12-01 10:00:00.000000000 -08:00",
                  f"  :score: !ruby/object:BigDecimal 18:{score / 100:.2f}e2", "  :results:"]
        lines += ["    " + line for line in yaml.safe_dump(results, sort_keys=False).splitlines()]
        lines.append("  :history: []")
    return "\n".join(lines) + "\n"


def test_a_gradescope_export_gives_the_report_of_grading_the_same_submissions_here(tmp_path):
    pytest.importorskip("yaml", reason="reading a Gradescope export needs PyYAML (the [class] extra)")
    bundle = gradescope.write_bundle(tmp_path / "autograder.zip")
    local = tmp_path / "local"
    records = {}
    for k, (student, changes) in enumerate(EXPORT_CASES.items()):
        texts = {t: reference(t) for t in topics.NAMES}
        for t, text in changes.items():
            if text is None:
                del texts[t]
            else:
                texts[t] = text
        write_student(local / student, texts, 1)
        ag = tmp_path / f"ag{k}"
        with zipfile.ZipFile(bundle) as z:
            z.extractall(ag / "source")
        shutil.copytree(local / student, ag / "submission")
        done = subprocess.run(["bash", str(ag / "source" / "run_autograder")], capture_output=True, text=True,
                              timeout=280, env={**os.environ, "AUTOGRADER_ROOT": str(ag), "PYTHON": sys.executable,
                                                   # as meta/test_gradescope.py: pytest's temporary folders
                                                   # are not readable by an unprivileged learner user
                                                   "KATA_LEARNER_USER": ""})
        results = json.loads((ag / "results" / "results.json").read_text()) if (ag / "results").is_dir() else None
        assert results, done.stdout[-2000:] + done.stderr[-2000:]
        records[f"submission_{1000 + k}"] = (student, results["score"], results)
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as z:
        z.writestr("assignment_42_export/submission_metadata.yml", ruby_yaml(records))
        for folder in records:
            z.writestr(f"assignment_42_export/{folder}/batchnorm.py", "# the submitted files are not read\n")
    from_export = classroom.grade_class(export, tmp_path / "out-export", JOBS, progress=False)
    from_here = classroom.grade_class(local, tmp_path / "out-local", JOBS, progress=False)
    assert from_export.graded == 0, "an export is read, not graded"
    assert sorted(from_export.students) == sorted(from_here.students)
    # "kata" hashes the reference too, which the bundle leaves out: the two hashes differ by design.
    # A learner-side message names the temporary folder the files were graded in: its name differs.
    def same(report):
        text = json.dumps({k: v for k, v in report.items() if k not in ("submission", "kata")}, sort_keys=True)
        return json.loads(TEMP_FOLDER.sub("", text))
    for student, report in from_here.students.items():
        ours, theirs = same(report), same(from_export.students[student])
        differ = [k for k in ours["topics"] if ours["topics"][k] != theirs["topics"][k]]
        assert not differ and ours == theirs, f"{student}: the export's report differs from grading here in {differ}"
    assert read_grades(tmp_path / "out-export") == read_grades(tmp_path / "out-local")
    pages = [TEMP_FOLDER.sub("", (tmp_path / out / "index.html").read_text())
             for out in ("out-export", "out-local")]
    assert pages[0] == pages[1], "the export's index.html differs from the one of grading here"


# ---------------------------------------------------------------- the page in a real browser
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(html.parser.HTMLParser):
    """Well-formed HTML: a doctype, every element closed in order, nothing that loads from elsewhere."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.doctype = [], [], False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.problems.append("a <script> element")
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value and not value.startswith("#"):
                self.problems.append(f"<{tag} {name}={value!r}> refers to another file")
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def validate(text: str) -> list:
    checker = Checker()
    checker.feed(text)
    checker.close()
    return checker.problems + ([] if checker.doctype else ["no <!DOCTYPE html>"]) + \
        [f"<{tag}> opened at {pos} is never closed" for tag, pos in checker.stack]


def chromium_requests(browser: str, page: Path, work: Path) -> tuple[list, Path]:
    """The URLs Chromium's net log saw while it took a screenshot of `page`, and the screenshot."""
    shot, netlog = work / "page.png", work / "netlog.json"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={work / 'profile'}", f"--screenshot={shot}", "--window-size=1200,3000",
                           f"--log-net-log={netlog}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-1500:]}"
    text = netlog.read_text(encoding="utf-8").rstrip()
    log = json.loads(text if text.endswith("}") else text.rstrip(",") + "]}")  # a log cut short has no end
    # Chromium's own requests (its updater, its clock) start with no initiating origin; a request of
    # the page starts with the page's ("null" for a file:// page)
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = sorted({e["params"].get("url", "") for e in log.get("events", []) if e.get("type") == start
                   and e.get("params", {}).get("initiator") != "not an origin"} - {""})
    return [u for u in urls if not u.startswith(("file:", "data:", "about:", "chrome:"))], shot


def test_the_page_validates_and_chromium_shows_it_without_a_request(graded, tmp_path):
    out, _, _ = graded
    page = out / "index.html"
    problems = validate(page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems[:10])
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does)")
    # the control: a page that does load an image from elsewhere shows up in the net log
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png" alt=""></body></html>')
    (tmp_path / "c").mkdir()
    seen, _ = chromium_requests(browser, control, tmp_path / "c")
    assert any("127.0.0.1:9" in u for u in seen), f"the net log missed the control page's request: {seen}"
    (tmp_path / "p").mkdir()
    outside, shot = chromium_requests(browser, page, tmp_path / "p")
    assert not outside, f"the page made requests: {outside[:10]}"
    assert shot.stat().st_size > 20_000, f"the screenshot is {shot.stat().st_size} bytes: a blank page?"
    if os.environ.get("KATA_SCREENSHOT"):  # where to keep it, to look at
        shutil.copyfile(shot, os.environ["KATA_SCREENSHOT"])
