"""How fast is the grader? Not a test: run it and read the numbers.

    python benchmarks/grader_latency.py [--runs 5]

1. Times `python -c "import torch"` (the floor) and `python grader.py --impl solutions` `runs`
   times each, alternating, and prints the medians and their ratio (goal: <= 1.6). The grade runs
   in the sandbox where one starts (its mode is printed), and again with KATA_SANDBOX=0
   (goal: sandboxed <= 1.1x process mode).
2. Times a grade of a tree whose kaiming_std never returns, against the normal grade (goal: <= 3x),
   and `pytest -m kaiming` on that tree.
3. Starts `python grader.py --watch` on a copy of solutions/, saves batchnorm.py `runs` times and
   prints the median time from the save to the verdict line (goal: <= 0.5 s).
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOPIC = "batchnorm"
HANG = "\n\ndef kaiming_std(fan_in, nonlinearity='tanh'):\n    while True:\n        pass\n"


def timed(command) -> float:
    env = None
    if command and command[0] == "KATA_SANDBOX=0":
        command, env = command[1:], {**os.environ, "KATA_SANDBOX": "0"}
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def medians(runs: int, commands: dict) -> dict:
    """Each command `runs` times, interleaved, so that machine load hits them alike."""
    times = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(timed(command))
    for name, values in times.items():
        print(f"{name:<44} median {statistics.median(values):6.2f} s  ({', '.join(f'{x:.2f}' for x in values)})")
    return {name: statistics.median(values) for name, values in times.items()}


def one_shot(runs: int, hung: Path) -> None:
    from kata import remote
    print(f"learner code runs in {remote.learner_mode()} mode")
    m = medians(runs, {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python grader.py --impl solutions": [sys.executable, "grader.py", "--impl", "solutions"],
        "KATA_SANDBOX=0 python grader.py --impl solutions": ["KATA_SANDBOX=0", sys.executable, "grader.py", "--impl",
                                                             "solutions"],
        "python grader.py --impl <kaiming_std hangs>": [sys.executable, "grader.py", "--impl", str(hung)],
        "pytest -m kaiming --impl=<kaiming_std hangs>": [sys.executable, "-m", "pytest", "-q", "-m", "kaiming",
                                                          "-p", "no:cacheprovider", f"--impl={hung}"],
    })
    floor, grade = m["python -c 'import torch'"], m["python grader.py --impl solutions"]
    plain = m["KATA_SANDBOX=0 python grader.py --impl solutions"]
    print(f"ratio grader / import torch: {grade / floor:.2f} (goal <= 1.6)")
    print(f"ratio grader / KATA_SANDBOX=0 grader: {grade / plain:.2f} (goal <= 1.1)")
    print(f"ratio hung grade / grade: {m['python grader.py --impl <kaiming_std hangs>'] / grade:.2f} (goal <= 3)")


def watch(runs: int, source: Path = ROOT / "solutions", env: dict | None = None) -> float:
    """The median time from saving TOPIC's file in a copy of `source` to `--watch`'s verdict line."""
    with tempfile.TemporaryDirectory() as tmp:
        impl = Path(tmp) / "impl"
        shutil.copytree(source, impl, ignore=shutil.ignore_patterns("__pycache__"))
        proc = subprocess.Popen([sys.executable, "-u", "grader.py", "--watch", "--impl", str(impl)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put((time.perf_counter(), line)) for line in proc.stdout],
                         daemon=True).start()

        def wait_for(pattern: str, limit: float = 60) -> float:
            deadline = time.perf_counter() + limit
            while True:
                at, line = lines.get(timeout=max(0.1, deadline - time.perf_counter()))
                if re.search(pattern, line):
                    return at

        try:
            wait_for(r"^watching ")
            latencies = []
            for k in range(runs):
                time.sleep(0.5)
                path = impl / f"{TOPIC}.py"
                saved = time.perf_counter()
                path.write_text(path.read_text() + f"\n# save {k}\n")
                latencies.append(wait_for(rf"^\[\d\d:\d\d:\d\d\]\s+\d+\s+{TOPIC}\s") - saved)
            print(f"watch: save -> verdict median {statistics.median(latencies):.2f} s  "
                  f"({', '.join(f'{x:.2f}' for x in latencies)}; includes up to 0.1 s of polling; goal <= 0.5)")
            return statistics.median(latencies)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hung = Path(tmp) / "hung"
        shutil.copytree(ROOT / "solutions", hung, ignore=shutil.ignore_patterns("__pycache__"))
        (hung / "kaiming.py").write_text((hung / "kaiming.py").read_text() + HANG)
        one_shot(args.runs, hung)
    watch(args.runs)


if __name__ == "__main__":
    main()
