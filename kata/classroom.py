"""Grade a class (`python grader.py --class SUBMISSIONS [--out DIR] [--jobs N] [--anonymize]`).

    SUBMISSIONS: a folder with one subfolder per student (any layout inside: the topic files are
                 found by name, as on the Gradescope route), a zip of such a folder, or a Gradescope
                 "Export Submissions" zip (nothing is graded: each submission's results.json,
                 kept in submission_metadata.yml, carries its report in `extra_data`).

Grading: N warm workers (`python -m kata.classroom --worker`), each of which imports torch and
pytest once, then forks one grading child per submission. The child runs kata.grading.grade on
that submission's files (learner code runs in the child's learner process, kata/remote.py) and
sends its report up a pipe; the worker, which never runs learner code, writes it to the store.
A child that outlives the per-submission limit is killed with everything it started; one that
dies is reported with its exit status. Either fails that submission only.

The store (`<out>/store/<key>.json`) holds each graded submission under a key made of its files'
contents, the kata's content hash, the seed and the limits: a rerun grades only what is new or
changed, and Ctrl-C loses nothing already stored (each entry is written whole, then renamed).

Outputs under --out: grades.csv, results.json and index.html (kata/classpage.py).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from kata import topics
from kata.results import Status

SUBMISSION_TIMEOUT = 240.0  # seconds for one submission: 26 functions that each hang for the 3 s call limit take 78 s
MEMORY_LIMIT = 6 << 30      # address space of one grading child and its learner process (torch maps ~2 GiB at import)
GRADED, TIMED_OUT, CRASHED = "graded", "timed out", "crashed"  # a submission's outcome (a topic's is a Status)
METADATA = "submission_metadata.yml"


# ---------------------------------------------------------------- input
@dataclass
class Submission:
    student: str                  # the folder's name (or the Gradescope submitter's sid)
    files: dict = field(default_factory=dict)   # {topic: Path of the submitted <topic>.py}
    report: dict | None = None    # already graded: from a Gradescope export

    def key(self, settings: str) -> str:
        """The store key: the submitted topic files' contents and the grading settings."""
        h = hashlib.sha256(settings.encode())
        for topic in sorted(self.files):
            h.update(b"\0" + topic.encode() + b"\0" + self.files[topic].read_bytes())
        return h.hexdigest()


class GraderFailure(RuntimeError):
    """The class could not be graded at all (exit status 3)."""


class InputError(ValueError):
    """SUBMISSIONS is not a folder, a zip or an export the class report can read."""


def discover(source, workdir: Path) -> list[Submission]:
    """The submissions in `source` (a folder, a zip of one, or a Gradescope export zip), by student."""
    source = Path(source)
    if zipfile.is_zipfile(source):
        root = workdir / "unzipped"
        with zipfile.ZipFile(source) as z:
            z.extractall(root)  # zipfile drops absolute paths and '..' from member names
    elif source.is_dir():
        root = source
    else:
        raise InputError(f"{source} is neither a folder nor a zip file")
    folders = _student_folders(root)
    if root != source and len(folders) == 1 and not any(p.is_file() for p in root.iterdir()):
        root = folders[0]  # a zip of the class folder (or of an export's folder): its contents
        folders = _student_folders(root)
    metadata = next((p for p in (root / METADATA, *root.glob(f"*/{METADATA}")) if p.is_file()), None)
    if metadata is not None:
        return from_export(metadata)
    from kata.gradescope import submitted_files
    return [Submission(folder.name, submitted_files(folder)) for folder in folders]


def _student_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


# ---------------------------------------------------------------- a Gradescope export
def load_metadata(path: Path) -> dict:
    """submission_metadata.yml as plain data, with Ruby's symbol keys (':score') read without the colon.
    Tags a Ruby exporter may write (!ruby/object:BigDecimal '18:0.1e2') become their plain values."""
    try:
        import yaml
    except ImportError:
        raise InputError("reading a Gradescope export needs PyYAML: pip install 'makemore-part3-kata[class]'") from None

    class Loader(yaml.SafeLoader):
        pass

    def untagged(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        text = loader.construct_scalar(node)
        if "BigDecimal" in suffix:
            try:
                return float(text.split(":")[-1])
            except ValueError:
                return text
        return text

    Loader.add_multi_constructor("!", untagged)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of submission folders, found {type(data).__name__}")
    return _plain_keys(data)


def _plain_keys(value):
    if isinstance(value, dict):
        return {str(k).lstrip(":"): _plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_keys(v) for v in value]
    return value


def from_export(metadata: Path) -> list[Submission]:
    """One Submission per submitter, each with the report its results.json carries."""
    out = []
    for folder, record in sorted(load_metadata(metadata).items()):
        if not isinstance(record, dict):
            continue
        report = report_from_results(record.get("results") or {}, record.get("score"))
        submitters = [s for s in record.get("submitters") or [] if isinstance(s, dict)] or [{}]
        for s in submitters:
            student = str(s.get("sid") or s.get("email") or s.get("name") or folder)
            out.append(Submission(student, report=report))
    return out


def report_from_results(results: dict, score=None) -> dict:
    """A student's report from a results.json that Gradescope kept: each test's extra_data is its
    topic's report entry (kata/scorecard.py results_json). A test without one (a bundle older than
    the class report, or the tampering verdict) gives what its status and output say."""
    header = results.get("extra_data") if isinstance(results.get("extra_data"), dict) else {}
    entries = {}
    for test in results.get("tests") or []:
        extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
        name = extra.get("topic") or str(test.get("name", "")).split(":")[0]
        if name not in topics.NAMES:
            continue
        if "status" in extra:
            entries[name] = {k: v for k, v in extra.items() if k != "topic"}
        else:
            passed = test.get("status") == "passed"  # Gradescope's word, not a Status
            entries[name] = _entry(name, Status.PASSED if passed else Status.FAILING,
                                   "" if passed else test.get("output", ""), score=test.get("score", 0))
    for name in topics.NAMES:
        if name not in entries:
            entries[name] = _entry(name, Status.ERROR,
                                   results.get("output") or "no result for this topic in the export")
    return {**{k: v for k, v in header.items() if k != "topics"}, "topics": entries}


# ---------------------------------------------------------------- reports of submissions that did not finish
def _entry(topic: str, status: Status, problem: str, score: int = 0) -> dict:
    """A topic's report entry without test results (kata/report.py topic_entry's keys)."""
    return {"status": status.value, "score": score, "max_score": topics.get(topic).points, "tests_passed": 0,
            "tests_total": 0, "tests": [], "problem": problem, "causes": [], "unexplained": [], "blocks": 0,
            "review": []}


def failed_report(why: str) -> dict:
    """The report of a submission whose grading did not finish: every topic an error, for `why`."""
    return {"mode": "", "kata": "", "torch": "", "seed": None,
            "topics": {t: _entry(t, Status.ERROR, why) for t in topics.NAMES}}


# ---------------------------------------------------------------- the store
class Store:
    """One JSON file per graded submission: {"outcome", "why", "seconds", "report"}."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, entry: dict) -> None:
        tmp = self.path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, self.path(key))  # whole or absent, even when interrupted


# ---------------------------------------------------------------- the worker (python -m kata.classroom --worker)
def worker_main() -> int:
    """Read one task a line on stdin, answer one line on stdout; never runs learner code itself."""
    from kata import grading, remote, report  # noqa: F401 - torch and pytest, once per worker
    from kata.testing import base_seed  # noqa: F401
    _become_subreaper()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write into the protocol
    _warm_up()
    protocol.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        task = json.loads(line)
        entry = grade_one(task["files"], task["timeout"], task["limit"], task.get("memory", MEMORY_LIMIT))
        Store(task["store"]).put(task["key"], entry)
        protocol.write(json.dumps({"key": task["key"], "outcome": entry["outcome"]}) + "\n")
    return 0


def _warm_up() -> None:
    """Collect the topic tests once here, so that each child finds them imported (and their
    assertions rewritten): 0.45 s of CPU once per worker saves 0.2 s per submission. (A whole
    grade of the reference would save 0.03 s more per submission, for 0.5 s more here.)"""
    import contextlib
    import io

    import pytest

    from kata import grading
    from kata.loader import BUILTIN
    args = grading.pytest_args([grading.test_file(t) for t in topics.NAMES], BUILTIN["solutions"], grading.TIMEOUT)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main([*args, "--collect-only"])


def grade_one(files: dict, timeout: float, limit: float, memory: int = MEMORY_LIMIT) -> dict:
    """Fork a child that grades `files` ({topic: path}); its report, or why there is none."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kata-class-") as tmp:
        impl, errors = Path(tmp) / "impl", Path(tmp) / "stderr"
        impl.mkdir()
        for topic, path in files.items():
            (impl / f"{topic}.py").write_bytes(Path(path).read_bytes())
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(impl, timeout, memory, write_end, errors)  # never returns
        os.close(write_end)
        data = _collect(read_end, start + limit)
        os.close(read_end)
        status = _reap(pid, kill=data is None)
        _stop_descendants()
        said = errors.read_text(encoding="utf-8", errors="replace").strip() if errors.is_file() else ""
    seconds = round(time.monotonic() - start, 2)
    if data is None:
        why = f"grading took longer than the limit of {limit:g} s for one submission and was stopped"
        return {"outcome": TIMED_OUT, "why": why, "seconds": seconds, "report": failed_report(why)}
    try:
        report = json.loads(data)
    except ValueError:
        report = None
    if status != 0 or not isinstance(report, dict):
        why = f"the grading process ended ({_words(status)}) before it reported"
        why += f": {said.splitlines()[-1][-300:]}" if said else ""
        return {"outcome": CRASHED, "why": why, "seconds": seconds, "report": failed_report(why)}
    return {"outcome": GRADED, "why": "", "seconds": seconds, "report": report}


def _child(impl: Path, timeout: float, memory: int, out_fd: int, errors: Path) -> None:
    """The grading child: grade the files in `impl`, write the report to out_fd, exit."""
    code = 70
    try:
        os.dup2(os.open(os.devnull, os.O_RDWR), 0)
        os.dup2(os.open(os.devnull, os.O_RDWR), 1)
        os.dup2(os.open(errors, os.O_WRONLY | os.O_CREAT, 0o600), 2)  # the grading side's own errors, for `why`
        os.setpgid(0, 0)
        from kata.learner import die_with_parent
        die_with_parent()  # a worker that is killed takes its grading child with it
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        from kata import grading, remote, report
        from kata.testing import base_seed
        os.chdir(impl)  # the learner's frames read batchnorm.py:12, not a temporary folder's path
        results = grading.grade(topics.NAMES, impl, timeout=timeout)
        data = json.dumps(report.build(results, remote.learner_mode(), base_seed())).encode()
        remote.reset_shared()
        with os.fdopen(out_fd, "wb") as f:
            f.write(data)
        code = 0
    except BaseException:  # noqa: BLE001 - said on stderr, which the worker reads back
        import traceback
        os.write(2, traceback.format_exc().encode())  # fd 2 itself: sys.stderr may be another stream (pytest's)
    finally:
        os._exit(code)


def _collect(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None at the deadline."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _reap(pid: int, kill: bool) -> int | None:
    if kill:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _words(status: int | None) -> str:
    if status is None:
        return "its status is unknown"
    if status < 0:
        return f"killed by {signal.Signals(-status).name}" if -status in signal.valid_signals() else f"signal {-status}"
    return f"exit status {status}"


def _become_subreaper() -> None:
    """Processes a submission starts and abandons become this worker's children, so they can be stopped."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
        except OSError:
            pass


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids: list[int]) -> None:
    """Freeze them all first, so none can start another, then kill them."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _stop_descendants() -> None:
    """Stop everything a submission left running (a fork bomb too: frozen first, then killed)."""
    if not os.path.isdir("/proc"):
        return
    for _ in range(50):
        left = _descendants(os.getpid())
        if not left:
            break
        _kill(left)
        while True:  # reap what became this worker's children
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


# ---------------------------------------------------------------- the queue
class Worker:
    COMMAND = ("-m", "kata.classroom", "--worker")

    def __init__(self):
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        # a session of its own: the terminal's Ctrl-C reaches the queue, which stops the workers
        self.proc = subprocess.Popen([sys.executable, *self.COMMAND], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, start_new_session=True, text=True, bufsize=1)
        self.task: dict | None = None
        self.ready = False

    def send(self, task: dict) -> None:
        self.task = task
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """The worker and all below it: its grading child is in a process group of its own, and
        what learner code started may be in a session of its own."""
        _kill([self.proc.pid, *(_descendants(self.proc.pid) if os.path.isdir("/proc") else [])])
        self.proc.wait()


def grade_all(tasks: list[dict], jobs: int, on_done=None) -> None:
    """Run the tasks on `jobs` warm workers; on_done(task, outcome) as each finishes. A worker that
    dies is replaced, and its submission recorded as crashed."""
    if not tasks:
        return
    queue = list(reversed(tasks))
    workers = [Worker() for _ in range(max(1, min(jobs, len(tasks))))]
    try:
        while queue or any(w.task for w in workers):
            for w in workers:
                if w.ready and w.task is None and queue:
                    w.send(queue.pop())
            by_fd = {w.proc.stdout.fileno(): w for w in workers if not w.ready or w.task}
            for fd in select.select(list(by_fd), [], [], 5.0)[0]:
                w = by_fd[fd]
                line = w.proc.stdout.readline()
                if not line and not w.ready:
                    raise GraderFailure(f"a grading worker could not start (exit status {w.proc.wait()})")
                if not line:  # the worker died: its submission fails, a new worker takes its place
                    task, w.task = w.task, None
                    w.stop()
                    workers[workers.index(w)] = Worker()
                    if task is not None:
                        why = "the grading worker died while grading this submission"
                        Store(task["store"]).put(task["key"], {"outcome": CRASHED, "why": why, "seconds": 0,
                                                               "report": failed_report(why)})
                        on_done and on_done(task, CRASHED)
                    continue
                reply = json.loads(line)
                if "ready" in reply:
                    w.ready = True
                    continue
                task, w.task = w.task, None
                on_done and on_done(task, reply["outcome"])
    finally:
        for w in workers:
            w.stop()


# ---------------------------------------------------------------- the class
@dataclass
class ClassRun:
    students: dict            # {student: report, with "outcome", "why" and "submission" added}
    graded: int               # submissions graded in this run (the rest came from the store or an export)
    seconds: float


def settings_key(timeout: float, limit: float) -> str:
    """What else decides a verdict. The seed as KATA_SEED spells it: kata.testing.base_seed would
    import torch, a second that a rerun with nothing to grade need not spend."""
    from kata import report
    return json.dumps({"kata": report.content_hash(), "seed": os.environ.get("KATA_SEED", ""),
                       "timeout": float(timeout), "limit": float(limit)})  # 3 and 3.0 are one setting


def grade_class(source, out, jobs: int | None = None, timeout: float | None = None, limit: float = SUBMISSION_TIMEOUT,
                anonymize: bool = False, progress: bool = True) -> ClassRun:
    """Grade (or read) every submission in `source`, write grades.csv, results.json and index.html to `out`."""
    start = time.monotonic()
    if timeout is None:
        from kata.remote import CALL_TIMEOUT
        timeout = CALL_TIMEOUT
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "store")
    with tempfile.TemporaryDirectory(prefix="kata-class-") as tmp:
        submissions = discover(source, Path(tmp))
        settings = settings_key(timeout, limit)
        keys = {id(s): s.key(settings) for s in submissions if s.report is None}
        todo, seen = [], set()
        for s in submissions:
            key = keys.get(id(s))
            if key and key not in seen and store.get(key) is None:
                seen.add(key)  # identical submissions are graded once
                todo.append({"key": key, "store": str(store.folder), "timeout": timeout, "limit": limit,
                             "files": {t: str(p) for t, p in s.files.items()}})
        bar = _bar(len(todo), progress)
        try:
            grade_all(todo, jobs or os.cpu_count() or 1, on_done=lambda task, outcome: bar.update(1))
        finally:
            bar.close()
        students = {}
        for s in submissions:
            if s.report is not None:
                entry = {"outcome": GRADED, "why": "", "report": s.report}
                digest = ""
            else:
                entry = store.get(keys[id(s)]) or {"outcome": CRASHED, "why": "no result was stored",
                                                    "report": failed_report("no result was stored")}
                digest = keys[id(s)][:12]
            students[_unique(s.student, students)] = {**entry["report"], "outcome": entry["outcome"],
                                                       "why": entry["why"], "submission": digest}
    if anonymize:
        students = _anonymized(students)
    write_outputs(students, out)
    return ClassRun(students, len(todo), time.monotonic() - start)


def _unique(name: str, taken: dict) -> str:
    k, candidate = 2, name
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def _anonymized(students: dict) -> dict:
    """New ids in a random order, so that neither the ids nor their order tell who is who."""
    import secrets
    names = list(students)
    order = sorted(names, key=lambda _: secrets.token_bytes(8))
    width = len(str(len(names)))
    new = {name: f"student-{k + 1:0{width}d}" for k, name in enumerate(order)}
    return {new[name]: students[name] for name in sorted(names, key=lambda n: new[n])}


def _bar(total: int, show: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="submission", desc="grading", disable=not show or total == 0, file=sys.stderr)


# ---------------------------------------------------------------- outputs
def flags(report: dict) -> list[str]:
    """What an instructor should look at: review lines, and a submission that did not finish grading."""
    out = [f"{report['outcome']}: {report['why']}"] if report.get("outcome", GRADED) != GRADED else []
    for name, entry in report["topics"].items():
        out += [f"{name}:{r.get('line', '?')} {r.get('why', '')}" for r in entry.get("review", [])]
    return out


def grades_rows(students: dict) -> list[dict]:
    rows = []
    for student, report in students.items():
        row = {"student": student, "total": sum(e["score"] for e in report["topics"].values())}
        row.update({name: report["topics"][name]["score"] for name in topics.NAMES})
        row.update({f"{name} status": report["topics"][name]["status"] for name in topics.NAMES})
        row["flags"] = "; ".join(flags(report))
        rows.append(row)
    return rows


def write_outputs(students: dict, out: Path) -> None:
    from kata import classpage
    rows = grades_rows(students)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "total", *topics.NAMES,
                                               *(f"{n} status" for n in topics.NAMES), "flags"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps({"students": students}, indent=1) + "\n", encoding="utf-8")
    (out / "index.html").write_text(classpage.render(students), encoding="utf-8")


def main(args, out) -> int:
    """grader.py --class: grade, write, say where. 2 for an input it cannot read, 3 when the grader
    itself fails."""
    if args.jobs is not None and args.jobs < 1:
        print(f"grader.py: error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    try:
        run = grade_class(args.class_, args.out, args.jobs, timeout=args.timeout,
                          anonymize=args.anonymize, progress=out.tty or bool(os.environ.get("KATA_PROGRESS")))
    except InputError as e:
        print(f"grader.py: error: {e}", file=sys.stderr)
        return 2
    except GraderFailure as e:  # never charged to a student: the class is not graded at all
        print(f"grader.py: error: {e}", file=sys.stderr)
        return 3
    failed = sum(r["outcome"] != GRADED for r in run.students.values())
    out.line(f"{len(run.students)} students, {run.graded} submissions graded now ({len(run.students) - run.graded} "
             f"from earlier runs or the export), {failed} did not finish; {run.seconds:.1f} s")
    for name in ("grades.csv", "results.json", "index.html"):
        out.line(f"wrote {Path(args.out) / name}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(worker_main())
    sys.exit("usage: python -m kata.classroom --worker (started by grader.py --class)")
