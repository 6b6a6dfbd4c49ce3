"""How fast is the grader? Not a test: run it and read the numbers.

    python benchmarks/grader_latency.py [--runs 5]

1. Times `python -c "import torch"` (the floor) and `python grader.py --impl solutions` `runs`
   times each, alternating, and prints the medians and their ratio (goal: <= 2.5).
2. Starts `python grader.py --watch` on a copy of solutions/, saves batchnorm.py `runs` times and
   prints the median time from the save to the verdict line.
"""
from __future__ import annotations

import argparse
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
TOPIC = "batchnorm"


def timed(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def one_shot(runs: int) -> None:
    floor, grade = [], []
    for _ in range(runs):  # alternate, so that machine load hits both alike
        floor.append(timed([sys.executable, "-c", "import torch"]))
        grade.append(timed([sys.executable, "grader.py", "--impl", "solutions"]))
    f, g = statistics.median(floor), statistics.median(grade)
    print(f"python -c 'import torch'            median {f:.2f} s  ({', '.join(f'{x:.2f}' for x in floor)})")
    print(f"python grader.py --impl solutions   median {g:.2f} s  ({', '.join(f'{x:.2f}' for x in grade)})")
    print(f"ratio {g / f:.2f} (goal <= 2.5)")


def watch(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        impl = Path(tmp) / "impl"
        shutil.copytree(ROOT / "solutions", impl, ignore=shutil.ignore_patterns("__pycache__"))
        proc = subprocess.Popen([sys.executable, "-u", "grader.py", "--watch", "--impl", str(impl)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put((time.perf_counter(), l)) for l in proc.stdout],
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
                  f"({', '.join(f'{x:.2f}' for x in latencies)}; includes up to 0.1 s of polling)")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    one_shot(args.runs)
    watch(args.runs)


if __name__ == "__main__":
    main()
