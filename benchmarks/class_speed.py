"""How fast does a class grade? Not a test: run it and read the numbers.

    python benchmarks/class_speed.py [--students 24] [--jobs 2]

1. `python grader.py --class` on STUDENTS copies of solutions/ (each a little different, so none is
   graded from another's result) with --jobs 1, then with --jobs JOBS, each into a fresh --out.
   Goal: the --jobs 2 run takes at most 0.6x the --jobs 1 run (on a machine with 2 free cores).
   The CPU time of each run (the whole process tree) is printed too: it does not depend on what
   else the machine runs, as the wall-clock times do.
2. Peak memory of each run: the proportional set size (PSS, so pages a forked child shares with
   its worker count once) summed over the grader's process tree, sampled every 50 ms, against
   the same for a class of one submission (one grade). Goal: peak <= (jobs + 1) x one grade's.
3. The --jobs JOBS run again on the same --out: it grades nothing new. Goal: under 5 s.

Measured (2 cores shared with other sessions' test suites, load average 6.2; 24 submissions):
--jobs 1 60.6 s, --jobs 2 39.1 s (0.65x: the 0.6x goal needs two free cores; the trees used 0.51
and 0.86 cores on average), 1.3-1.4 s of CPU a submission; peak 465 MiB with --jobs 2 against
(2 + 1) x 228 MiB = 685 MiB; the rerun 0.8 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_class(folder: Path, students: int) -> Path:
    for k in range(students):
        dest = folder / f"student{k:03d}"
        shutil.copytree(ROOT / "solutions", dest, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        with open(dest / "batchnorm.py", "a", encoding="utf-8") as f:
            f.write(f"\n# student {k}\n")  # a different submission: a store key of its own
    return folder


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


def cpu_seconds() -> float:
    """CPU time of every process this one has waited for, theirs included: the grader, its workers,
    their grading children and learner processes (each reaped by its parent)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(source: Path, out: Path, jobs: int) -> tuple[float, float, float]:
    """(seconds, peak MiB of the process tree, CPU seconds) of one `grader.py --class` run."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "grader.py"), "--class", str(source), "--out", str(out),
                             "--jobs", str(jobs)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(pss_kib(p) for p in tree(proc.pid)))
            time.sleep(0.05)

    watcher = threading.Thread(target=sample)
    watcher.start()
    proc.wait()
    seconds = time.perf_counter() - start
    watcher.join()
    if proc.returncode:
        sys.exit(f"grader.py --class exited with {proc.returncode}")
    return seconds, peak[0] / 1024, cpu_seconds() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one_s, one_mib, _ = run(make_class(tmp / "one", 1), tmp / "out-one", 1)
        source = make_class(tmp / "class", args.students)
        load = os.getloadavg()[0]
        serial_s, serial_mib, serial_cpu = run(source, tmp / "out-1", 1)
        parallel_s, parallel_mib, parallel_cpu = run(source, tmp / "out-n", args.jobs)
        again_s, _, _ = run(source, tmp / "out-n", args.jobs)
    ratio = parallel_s / serial_s
    print(f"{os.cpu_count()} cores, load average {load:.1f} before the runs (other work shares the cores), "
          f"{args.students} submissions")
    print(f"one submission, --jobs 1:  {one_s:6.1f} s, peak {one_mib:6.0f} MiB (one grade)")
    print(f"--jobs 1:                  {serial_s:6.1f} s, peak {serial_mib:6.0f} MiB, "
          f"CPU {serial_cpu:6.1f} s ({serial_cpu / args.students:.2f} s a submission)")
    print(f"--jobs {args.jobs}:                  {parallel_s:6.1f} s, peak {parallel_mib:6.0f} MiB, "
          f"CPU {parallel_cpu:6.1f} s ({parallel_cpu / args.students:.2f} s a submission)")
    met = "met" if ratio <= 0.6 else "NOT met"
    print(f"time ratio --jobs {args.jobs} / --jobs 1: {ratio:.2f}  (goal <= 0.6: {met})")
    limit = (args.jobs + 1) * one_mib
    print(f"peak memory --jobs {args.jobs}: {parallel_mib:.0f} MiB, (jobs + 1) x one grade = {limit:.0f} MiB  "
          f"(goal: {'met' if parallel_mib <= limit else 'NOT met'})")
    print(f"rerun, nothing new:        {again_s:6.1f} s  (goal < 5 s: {'met' if again_s < 5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
