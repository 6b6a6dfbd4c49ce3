"""Time the lecture-style loop against `python -m kata lecture`'s loss log at the same step count.

    python benchmarks/lecture_speed.py --steps 20000          # about a minute on 2 cores
    python benchmarks/lecture_speed.py                        # the full 200,000 steps (~8 min)

Both train the five stages with the reference code (--impl to change) from the same seeds and
evaluate them on the whole splits in the same way (mlp.evaluate: the learner's split_loss). The
baseline is the notebook's loop (kata/loop.py: autograd everywhere, one torch.randint a step, one
stage after the other, `mlp.reference_loop`); the kata's is what `python -m kata lecture --part
loss-log` runs (kata/fastmlp.py: batched stages, hand-written backward, batch norm in a second
process). Both run in this one process, one after the other, so they see the same machine.
Prints each stage's train / val loss from both and the speed-up, plain time / kata time.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from pathlib import Path

import torch

from kata import data, facts, lecture, mlp
from kata.loader import Implementation


def plain(code, d, steps):
    rows = []
    for name in facts.STAGES:
        stage = mlp.init_stage(name, code, d.vocab_size, d.Xtr.shape[1])
        mlp.reference_loop(stage, code, d.Xtr, d.Ytr, steps)
        rows.append({"stage": name, **mlp.evaluate(stage, code, d)})
    return rows


def kata(code, d, steps):
    """The command's loss log: init, first minibatches, training, evaluation (its printing and
    progress lines are swallowed)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run = lecture.train_mlp(code, d, facts.STAGES, steps)
        rows, _ = lecture.run_loss_log(code, d, run)
    return rows


def others_cpu_seconds() -> float | None:
    """CPU seconds used so far by every process except this one and its children (Linux): the
    other work on the machine, which slows both loops (a second process on a 2-core machine halves
    the kata's gain from its second process)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK") - own


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=facts.STEPS)
    parser.add_argument("--impl", default="solutions")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `python -m kata lecture`
    code = lecture.load_code(Implementation(args.impl), lecture.PARTS["loss-log"])
    d = data.load(args.data)

    others = {}

    def timed(name, fn):
        start, before = time.perf_counter(), others_cpu_seconds()
        result = fn()
        after = others_cpu_seconds()
        others[name] = None if before is None else after - before
        return result, time.perf_counter() - start

    plain_rows, t_plain = timed("plain", lambda: plain(code, d, args.steps))
    kata_rows, t_kata = timed("kata", lambda: kata(code, d, args.steps))
    busy = "" if others["plain"] is None else (
        f"; other processes used {others['plain']:.1f} CPU-s during the plain run, {others['kata']:.1f} during the kata's")
    print(f"{args.steps:,} steps per stage, impl {args.impl}, {os.cpu_count()} cores{busy}")
    print(f"{'stage':<10} {'plain train':>11} {'plain val':>9} {'kata train':>10} {'kata val':>8} {'|dval|':>7}")
    for p, k in zip(plain_rows, kata_rows):
        print(f"{p['stage']:<10} {p['train']:>11.4f} {p['val']:>9.4f} {k['train']:>10.4f} {k['val']:>8.4f} "
              f"{abs(p['val'] - k['val']):>7.4f}")
    print(f"plain loop {t_plain:.1f} s ({t_plain / args.steps / len(facts.STAGES) * 1e3:.3f} ms per stage-step); "
          f"kata {t_kata:.1f} s; speed-up plain/kata {t_plain / t_kata:.2f}x (goal >= 4x)")


if __name__ == "__main__":
    main()
