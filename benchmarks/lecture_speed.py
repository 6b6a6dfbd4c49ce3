"""Time the lecture-style loop against `python -m kata lecture`'s loss log at the same step count.

    python benchmarks/lecture_speed.py --steps 20000          # a few minutes on 2 cores
    python benchmarks/lecture_speed.py                        # the full 200,000 steps (~7 min plain)

Both train the five stages with the reference code (--impl to change) from the same seeds; the
plain loop is the notebook's (autograd everywhere, one torch.randint a step, one stage after the
other), the kata's is kata.mlp.loss_log (batched stages, hand-written MLP backward, two processes).
Prints each stage's train / val loss from both, and the time ratio kata / plain.
"""
from __future__ import annotations

import argparse
import time

import torch

from kata import data, lecture, mlp
from kata.loader import Implementation


def plain(code, d, steps):
    rows = []
    for name in mlp.STAGES:
        stage = mlp.init_stage(name, code, d.vocab_size, d.Xtr.shape[1])
        mlp.reference_loop(stage, code, d.Xtr, d.Ytr, steps)
        rows.append({"stage": name, **mlp.evaluate(stage, code, d)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--impl", default="solutions")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `python -m kata lecture`
    code = lecture.load_code(Implementation(args.impl), lecture.PARTS["loss-log"])
    d = data.load(args.data)

    def timed(fn):
        start = time.perf_counter()
        return fn(), time.perf_counter() - start

    # training and evaluation are both inside the timings: the whole loss log
    plain_rows, t_plain = timed(lambda: plain(code, d, args.steps))
    kata_rows, t_kata = timed(lambda: mlp.loss_log(code, d, args.steps))
    print(f"{args.steps:,} steps per stage, impl {args.impl}")
    print(f"{'stage':<10} {'plain train':>11} {'plain val':>9} {'kata train':>10} {'kata val':>8} {'|dval|':>7}")
    for p, k in zip(plain_rows, kata_rows):
        print(f"{p['stage']:<10} {p['train']:>11.4f} {p['val']:>9.4f} {k['train']:>10.4f} {k['val']:>8.4f} "
              f"{abs(p['val'] - k['val']):>7.4f}")
    print(f"plain loop {t_plain:.1f} s ({t_plain / args.steps / 5 * 1e3:.3f} ms per stage-step); "
          f"kata {t_kata:.1f} s; ratio kata/plain {t_kata / t_plain:.3f} (goal <= 0.25)")


if __name__ == "__main__":
    main()
