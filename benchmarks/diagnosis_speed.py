"""What does the diagnosis cost? Not a test: run it and read the numbers.

    python benchmarks/diagnosis_speed.py [--runs 5]

Grades one topic (batchnorm) with `python grader.py batchnorm --impl ...`, `runs` times each,
interleaved so that machine load hits them alike, and prints the medians:
- a passing grade (the reference): no failure, nothing to diagnose;
- a failing topic's first grade (the unbiased variance; an empty .kata/ each time): every failing
  test replayed against the reference and each catalogued mistake (goal: <= 2x the passing grade);
- the same grade again with the cache warm (goal: <= 1.2x);
- `--watch` on that failing tree, save -> verdict with the cache warm (goal: <= 0.5 s);
and the size of the cache after the failing grade (.kata/diagnosis/).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
TOPIC, MISTAKE = "batchnorm", "unbiased_variance"


def grade(impl: Path, state: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "grader.py", TOPIC, "--impl", str(impl)], cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "KATA_STATE": str(state)})
    return time.perf_counter() - start


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    from grader_latency import watch
    from kata import catalog, topics
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    mistake = next(m for m in topics.mistakes(TOPIC) if m.id == MISTAKE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wrong = catalog.build(mistake, tmp / "wrong")
        times: dict[str, list] = {"passing": [], "failing, cold cache": [], "failing, warm cache": []}
        sizes = []
        for k in range(args.runs):
            times["passing"].append(grade(ROOT / "solutions", tmp / f"pass{k}"))
            cold = tmp / f"cold{k}"
            times["failing, cold cache"].append(grade(wrong, cold))
            sizes.append(size(cold / "diagnosis"))
            times["failing, warm cache"].append(grade(wrong, cold))
        median = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            print(f"{name:<22} median {median[name]:6.2f} s  ({', '.join(f'{x:.2f}' for x in values)})")
        passing = median["passing"]
        print(f"ratio first failing grade / passing grade: {median['failing, cold cache'] / passing:.2f} (goal <= 2)")
        print(f"ratio warm failing grade / passing grade: {median['failing, warm cache'] / passing:.2f} (goal <= 1.2)")
        print(f"cache after one failing grade: {statistics.median(sizes) / 1e6:.2f} MB (.kata/diagnosis/cache.sqlite)")
        warm = tmp / "cold0"
        watch(args.runs, wrong, {"KATA_STATE": str(warm)})


if __name__ == "__main__":
    main()
