"""Gradescope: the autograder zip, and what it runs for each submission.

    python grader.py --gradescope-bundle autograder.zip    # write the zip (kata/gradescope.py:write_bundle)
    python -m kata.gradescope [--root /autograder]         # grade one submission (run_autograder calls it)

The zip holds the kata (kata/, tests/, grader.py, pyproject.toml, and solutions/, the reference the
diagnosis replays its catalogued mistakes from, readable by root only), `setup.sh` (Gradescope runs it
once to build the image: the CPU torch wheel and the kata), `run_autograder` (run for each
submission) and MANIFEST.json, the sha256 of every file of the kata in the zip.

For a submission: the kata's files are checked against the manifest before any learner code
runs; every module the report needs is imported; the submitted .py files named after the topics
are copied into a fresh folder and graded (learner code runs in a learner process of its own,
as an unprivileged user when the run is root and KATA_LEARNER_USER names one); the kata's files
are checked again, and results/results.json is written. A change to the kata's files is
reported as a failure of every topic: the verdict would not be the kata's. Where the grading
side flags code it cannot verify (kata/review.py), an entry per topic says so with
"visibility": "hidden": instructors see it, students do not.

Limits: the whole run has a deadline (--deadline, default RUN_DEADLINE seconds); when it passes,
results.json is written anyway (every topic not yet graded scores 0) and the run ends. A failure
of the kata itself is reported as such (exit status 3), never as the learner's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from kata import topics
from kata.loader import ROOT

SHIPPED = ("grader.py", "pyproject.toml", "README.md", "kata", "tests", "solutions")  # solutions: for diagnosis, root only
RUN_DEADLINE = 600.0  # seconds a whole run may take: a normal one takes under 15, one hung function 3 more each

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image.
set -euo pipefail
cd /autograder/source
python3 -m pip install --upgrade pip
# the CPU build of torch: the default one pulls several GB of CUDA libraries the grading never uses
python3 -m pip install torch --index-url https://download.pytorch.org/whl/cpu
python3 -m pip install .
# the user learner code runs as (kata/gradescope.py): it cannot write the kata's files
id -u nobody >/dev/null 2>&1 || useradd --system --no-create-home nobody
# the reference (what diagnosis replays the catalogued mistakes from) is readable by root only
chmod -R go-rwx solutions
installed="$(cd / && python3 -c 'import kata, os; print(os.path.dirname(kata.__file__))')" \
  && chmod -R go-rwx "$installed/solutions" || true
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. AUTOGRADER_ROOT moves the root (to try the bundle
# in a temporary folder); PYTHON chooses the interpreter.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source" || exit 1
if [ "$(id -u)" = 0 ]; then export KATA_LEARNER_USER="${KATA_LEARNER_USER-nobody}"; fi
# the reference and the diagnosis cache (the catalogued mistakes, built from it): root only
chmod -R go-rwx solutions
mkdir -p -m 700 "$ROOT/source/.kata" && export KATA_STATE="$ROOT/source/.kata"
exec "${PYTHON:-python3}" -m kata.gradescope --root "$ROOT"
"""


# ---------------------------------------------------------------- the zip
def shipped_files(root: Path = ROOT) -> list[Path]:
    files = []
    for name in SHIPPED:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix != ".pyc"]
    return files


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p) for p in shipped_files(root)}


def write_bundle(zip_path) -> Path:
    """The autograder zip for a Gradescope programming assignment."""
    zip_path = Path(zip_path)
    manifest = checksums(ROOT)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in manifest:
            z.write(ROOT / rel, rel)
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unzipped
            z.writestr(info, text)
        z.writestr("MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return zip_path


# ---------------------------------------------------------------- one submission
def submitted_files(submission: Path) -> dict[str, Path]:
    """{topic: the submitted <topic>.py}; where several have the name, the one nearest the top."""
    found: dict[str, Path] = {}
    for path in sorted(submission.rglob("*.py"), key=lambda p: (len(p.parts), str(p))):
        if path.stem in topics.NAMES and path.stem not in found:
            found[path.stem] = path
    return found


def tampered(manifest: dict, root: Path) -> list[str]:
    now = checksums(root)
    return sorted(rel for rel in set(manifest) | set(now) if manifest.get(rel) != now.get(rel))


def run(root: Path, timeout: float | None = None, deadline: float = RUN_DEADLINE) -> dict:
    """Grade the submission under `root` and write root/results/results.json; return it."""
    from kata import sandbox
    sandbox.prestart()  # the sandbox imports torch while this process does
    from kata import grading, scorecard  # noqa: F401 - imported before any learner code runs
    timeout = grading.TIMEOUT if timeout is None else timeout
    source = root / "source"
    manifest = json.loads((source / "MANIFEST.json").read_text(encoding="utf-8"))
    before = tampered(manifest, source)
    impl = Path(tempfile.mkdtemp(prefix="submission-"))
    found = submitted_files(root / "submission")
    for topic, path in found.items():
        shutil.copyfile(path, impl / f"{topic}.py")
    _readable(impl)
    out = root / "results" / "results.json"
    _deadline(deadline, out, found)
    here = os.getcwd()
    os.chdir(impl)  # the learner's frames then read batchnorm.py:12, not a temporary folder's path
    failed = ""
    try:
        results = grading.grade(topics.NAMES, impl, timeout=timeout) if not before else {}
    except grading.GraderFailure as e:
        results, failed = {}, str(e)
    finally:
        os.chdir(here)
        signal.setitimer(signal.ITIMER_REAL, 0)
    changed = before or tampered(manifest, source)
    if changed:
        data = _tampering(changed, before=bool(before))
    elif failed:
        data = _everything_failed(failed)
    else:
        from kata import remote
        data = scorecard.results_json(results, f"{len(found)} of {len(topics.NAMES)} topic files submitted; "
                                               f"learner code ran in {remote.learner_mode()} mode")
        if len(found) < len(topics.NAMES):
            missing = [t for t in topics.NAMES if t not in found]
            data["output"] += f"; not found in the submission: {', '.join(f'{t}.py' for t in missing)}"
        data["tests"] += review_entries(results)
    _write(out, data)
    shutil.rmtree(impl, ignore_errors=True)
    return data


def review_entries(results: dict) -> list[dict]:
    """One entry per flagged topic, for instructors only: what the grading side could not verify."""
    return [{"name": f"{r.topic.name}: needs review", "score": 0, "max_score": 0, "status": "failed",
             "visibility": "hidden",
             "output": "\n".join(f"line {f['line']}: {f['why']}" for f in r.review)
             + "\nthis code reaches torch's or the kata's internals, where it could change what the learner "
               "process reports (shortcuts, inputs left unchanged, grad mode): read it before trusting the score"}
            for r in results.values() if r.review]


def _write(out: Path, data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def _deadline(seconds: float, out: Path, found: dict) -> None:
    """When the whole run passes its deadline: write results.json (nothing graded scores) and end,
    taking the learner processes with it."""
    def expired(signum, frame):
        why = (f"the grading did not finish within {seconds:g} s, so it was stopped; nothing was scored. "
               "Ask the instructor to look at this submission")
        _write(out, _everything_failed(why))
        from kata import remote
        remote._stop_all()
        os._exit(1)
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _everything_failed(why: str) -> dict:
    entries = [{"name": f"{t.name}: {t.section}", "score": 0, "max_score": t.points, "status": "failed",
                "output": why} for t in topics.TOPICS]
    return {"score": 0, "max_score": sum(t.points for t in topics.TOPICS), "output": why, "tests": entries}


def _tampering(changed: list[str], before: bool) -> dict:
    when = "before grading started" if before else "while the submission's code ran"
    why = (f"the autograder's own files changed {when}: {', '.join(changed[:10])}"
           + (" ..." if len(changed) > 10 else "") + ". The verdict would not be the kata's, so every topic fails; "
           "ask the instructor to look at this submission")
    return _everything_failed(why)


def _readable(folder: Path) -> None:
    """The learner process may run as another user: it must be able to read the copied files."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.gradescope", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one call of learner code may take (default: the kata's, kata/remote.py)")
    parser.add_argument("--deadline", type=float, default=float(os.environ.get("KATA_RUN_DEADLINE", RUN_DEADLINE)))
    args = parser.parse_args(argv)
    data = run(args.root.resolve(), args.timeout, args.deadline)
    print(f"score {data['score']}/{data['max_score']}")
    return 3 if data["output"].startswith("the grader failed") else 0


if __name__ == "__main__":
    sys.exit(main())
