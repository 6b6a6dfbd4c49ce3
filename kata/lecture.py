"""`python -m kata lecture`: train the lecture's networks with your own code, next to its numbers.

    python -m kata lecture                          # both parts, the lecture's full 200,000 steps
    python -m kata lecture --steps 5000             # a quick loss log
    python -m kata lecture --part deep-net --plots plots/
    python -m kata lecture --part deep-net --no-batchnorm --gain 3
    python -m kata lecture --part deep-net --lecture-batchnorm   # the notebook's table, figure for figure
    python -m kata lecture --impl solutions --json out.json

Part 1 (loss-log) trains the MLP in the lecture's five stages; part 2 (deep-net) trains the deep
net built from your Linear, BatchNorm1d and Tanh for 1,001 steps and prints the per-layer tables.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from kata import data as kata_data
from kata import deepnet, mlp
from kata.loader import Implementation, ImplNotFound, LearnerImportError

# The functions each part calls, by topic, with a tiny call that shows whether they are done.
PROBES = {
    "no_grad": lambda m: m.split_loss(lambda X: X.float(), torch.zeros(2, 3), torch.tensor([0, 1])),
    "initial_loss": lambda m: (m.expected_initial_loss(27), m.scale_output_layer(torch.ones(2, 3), torch.ones(3))),
    "saturation": lambda m: m.saturation_fraction(torch.tensor([0.5, 0.999])),
    "kaiming": lambda m: (m.kaiming_std(30), m.kaiming_normal(3, 4, generator=torch.Generator().manual_seed(0))),
    "batchnorm": lambda m: m.batchnorm_forward(torch.arange(6.0).view(3, 2), torch.ones(2), torch.zeros(2)),
    "running_stats": lambda m: (m.ema_update(torch.zeros(2), torch.ones(2)), m.calibrate(torch.ones(3, 2)),
                                m.batchnorm_eval(torch.ones(3, 2), torch.zeros(2), torch.ones(2), torch.ones(2), torch.zeros(2))),
    "modules": lambda m: (m.Linear(3, 2, generator=torch.Generator().manual_seed(0))(torch.ones(4, 3)),
                          m.BatchNorm1d(2)(torch.arange(8.0).view(4, 2)), m.Tanh()(torch.ones(2))),
    "diagnostics": lambda m: (m.activation_stats(torch.tensor([0.1, 0.99])),
                              m.grad_to_data_ratio(torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.3]))),
    "update_ratio": lambda m: m.update_ratios([_with_grad(torch.tensor([[1.0, 2.0]]))], 0.1),
}
PARTS = {
    "loss-log": ("no_grad", "initial_loss", "saturation", "kaiming", "batchnorm", "running_stats"),
    "deep-net": ("no_grad", "modules", "diagnostics", "update_ratio"),
}


def _with_grad(t):
    t.grad = t * 0.5
    return t


class Unfinished(Exception):
    """Some topics a part needs are not done; the message is the one line to print."""


def load_code(impl: Implementation, topics) -> SimpleNamespace:
    """The learner's functions of `topics` in one namespace, each probed with a tiny call first:
    a topic still raising NotImplementedError (or failing to import, or raising) is reported
    before any training starts."""
    code, todo, broken = SimpleNamespace(), [], []
    for topic in topics:
        try:
            module = impl.load(topic)
            PROBES[topic](module)
        except NotImplementedError:
            todo.append(topic)
            continue
        except LearnerImportError as e:
            broken.append(f"{topic} ({e})")
            continue
        except Exception as e:  # noqa: BLE001 - learner code: any failure means "not ready"
            broken.append(f"{topic} ({type(e).__name__}: {e})")
            continue
        for name in dir(module):
            if not name.startswith("_"):
                setattr(code, name, getattr(module, name))
    if todo or broken:
        names = [*todo, *(b.split(" ")[0] for b in broken)]
        detail = "; ".join(broken)
        raise Unfinished(
            f"finish these topics first: {', '.join(names)} (check with: python grader.py {' '.join(names)})"
            + (f"; errors: {detail}" if detail else "")
        )
    return code


# ---------------------------------------------------------------------------------------------
# progress


class Progress:
    """A tqdm bar with the running loss on a terminal; a line every 10% otherwise."""

    def __init__(self, total: int, label: str, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.label, self.done, self.next_report = total, label, 0, total // 10
        self.bar = None
        self.start = time.perf_counter()
        if self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, unit="step", file=self.stream, dynamic_ncols=True)

    def __call__(self, n: int, loss: float):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif self.done >= self.next_report or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            print(f"  {self.label}: step {self.done:,}/{self.total:,}  loss {loss:.4f}  ({elapsed:.0f} s)",
                  file=self.stream, flush=True)
            self.next_report = self.done + max(self.total // 10, 1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# part 1: the loss log


def run_loss_log(code, dataset, steps: int, out=print) -> list[dict]:
    """Train the five stages and print the loss log beside the lecture's."""
    out(f"\nPart 1: the loss log (MLP n_embd {mlp.N_EMBD}, n_hidden {mlp.N_HIDDEN}, batch {mlp.BATCH}, "
        f"{steps:,} steps, lr 0.1 then 0.01 from step {steps // 2:,})")
    expected = code.expected_initial_loss(dataset.vocab_size)
    parallel = mlp.use_parallel(steps)  # the BN stage in a second process, else after the others
    # in one process the four plain stages train first, then the BN stage: twice the steps to show
    progress = Progress(steps if parallel else 2 * steps, "loss log" if parallel else "loss log (4 stages, then BN)")
    started = time.perf_counter()
    try:
        rows = mlp.loss_log(code, dataset, steps, progress=progress, parallel=parallel)
    finally:
        progress.close()
    for r in rows:
        r["expected_init_loss"] = expected
    out(f"trained in {time.perf_counter() - started:.0f} s\n")
    full = steps == 200_000
    note = "lecture (200k steps)" if full else f"lecture (200k; this run {steps:,})"
    out(f"{'stage':<44} {'init loss':>9} {'sat@init':>8} {'train':>7} {'val':>7}   {note}")
    for r in rows:
        out(f"{r['title']:<44} {r['init_loss']:>9.4f} {r['init_saturation']:>8.2%} {r['train']:>7.4f} "
            f"{r['val']:>7.4f}   {r['lecture_train']:.4f} / {r['lecture_val']:.4f}"
            + (f"  (val {r['val'] - r['lecture_val']:+.4f})" if full else ""))
    out(f"expected initial loss -log(1/{dataset.vocab_size}) = {expected:.4f}; the lecture: 27.88 naive, "
        "3.3221 after scale_output_layer; saturation 60.95% naive, 0.98% after W1 * 0.2, 8.14% Kaiming")
    bn = next((r for r in rows if "calibrated" in r), None)
    if bn:
        cal = bn["calibrated"]
        out(f"batch norm at inference: running statistics (EMA) train {bn['train']:.4f} val {bn['val']:.4f}; "
            f"calibrated on the training set train {cal['train']:.4f} val {cal['val']:.4f} "
            "(the lecture: almost the same, val 2.1057 with the EMA)")
        out(f"your batchnorm_forward ran every step; its gradient: {bn['bn_backward']}")
    return rows


# ---------------------------------------------------------------------------------------------
# part 2: the deep net


def run_deep_net(code, dataset, steps: int, batchnorm: bool, gain, plots: Path | None, out=print,
                 lecture_batchnorm: bool = False) -> dict:
    net = deepnet.build(code, dataset.vocab_size, dataset.Xtr.shape[1], batchnorm=batchnorm, gain=gain,
                        lecture_batchnorm=lecture_batchnorm)
    n_params = sum(p.numel() for p in net.parameters())
    kind = "without batch norm"
    if batchnorm:
        kind = "with the notebook's BatchNorm1d" if lecture_batchnorm else "with your BatchNorm1d"
    out(f"\nPart 2: the deep net {kind} (gain {net.gain:.4g}, {n_params:,} parameters; the lecture: "
        f"{'47,024' if batchnorm else '46,497'}), {steps:,} steps at lr {deepnet.LR}")
    progress = Progress(steps, "deep net")
    try:
        trace = deepnet.train(net, code, code, dataset.Xtr, dataset.Ytr, steps=steps, progress=progress)
    finally:
        progress.close()
    tables = _deep_net_tables(net, trace, code)
    written = []
    if plots is not None:  # before evaluation: the plots show the last training step's .out and .grad
        from kata import plots as kata_plots
        written = kata_plots.write_all(net, trace, code, plots, lr=deepnet.LR)
    for layer in net.layers:
        if hasattr(layer, "training"):
            layer.training = False
    result = {
        "steps": steps, "batchnorm": batchnorm, "gain": net.gain, "parameters": n_params,
        "batchnorm_variance": None if not batchnorm else "unbiased (the notebook's class)" if lecture_batchnorm
        else "biased (yours, as torch)",
        "step0_loss": trace.losses[0],
        **_evaluate(code, net, dataset),
        **tables,
        "update_ratios": trace.update_ratios, "losses": trace.losses,
    }
    lecture = batchnorm and net.gain == 1.0 and steps == deepnet.STEPS
    ref = deepnet.LECTURE if lecture else None
    out(f"step-0 loss {result['step0_loss']:.4f}" + (f" (lecture {ref['step0_loss']:.4f})" if ref else "")
        + f"; after {steps:,} steps train {result['train']:.4f}, val {result['val']:.4f}"
        + (f" (lecture {ref['train']:.4f}, {ref['val']:.4f})" if ref else ""))
    if ref and not lecture_batchnorm:
        out("  the small differences from the notebook come from one convention: its BatchNorm1d divides the "
            "variance by N - 1 (x.var(0)),\n  yours by N, as torch does. `--lecture-batchnorm` runs the "
            "notebook's class and reproduces its table.")

    out("\nviz #1 and #2: tanh layers after the last step (saturated: |t| > 0.97)")
    out(f"{'layer':>5} {'mean':>7} {'std':>6} {'saturated':>9} {'grad std':>10} {'init std':>9} {'init sat':>9}"
        + ("   lecture: mean std saturated grad std" if ref else ""))
    for k, (row, init) in enumerate(zip(result["tanh_layers"], result["tanh_layers_init"])):
        line = (f"{row['layer']:>5} {row['mean']:>+7.2f} {row['std']:>6.2f} {row['saturated']:>9.2%} {row['grad_std']:>10.2e} "
                f"{init['std']:>9.2f} {init['saturated']:>9.2%}")
        if ref:
            _, m, s, sat, gs = ref["tanh"][k]
            line += f"   {m:+.2f} {s:.2f} {sat:.2%} {gs:.2e}"
        out(line)

    out("\nviz #3: weight gradients after the last step")
    out(f"{'shape':>12} {'grad std':>10} {'grad:data':>10}" + ("   lecture: grad std  grad:data" if ref else ""))
    for k, row in enumerate(result["weights"]):
        line = f"{str(tuple(row['shape'])):>12} {row['grad_std']:>10.2e} {row['grad_to_data']:>10.2e}"
        if ref:
            line += f"   {ref['weights'][k][1]:.2e}  {ref['weights'][k][2]:.2e}"
        out(line)

    ud = torch.tensor(trace.update_ratios)  # (steps, n_weights)
    last = ud[-min(100, len(ud)):].mean(0)
    out("\nviz #4: update:data ratio, log10((lr * grad).std() / data.std()), mean of the last "
        f"{min(100, len(ud))} steps (the lecture's guide: about -3)")
    out("  " + "  ".join(f"{tuple(w['shape'])} {v:+.2f}" for w, v in zip(result["weights"], last.tolist())))
    for path in written:
        out(f"wrote {path}")
    return result


def _evaluate(code, net, dataset) -> dict:
    with mlp.all_cores():
        return {"train": code.split_loss(net, dataset.Xtr, dataset.Ytr),
                "val": code.split_loss(net, dataset.Xdev, dataset.Ydev)}


def _deep_net_tables(net, trace, code) -> dict:
    """The lecture's per-layer figures of the last training step, with the learner's functions."""
    tanh, weights = [], []
    for j in net.tanh_layers():
        t = net.layers[j].out
        tanh.append({"layer": j, **code.activation_stats(t.detach()), "grad_std": t.grad.std().item()})
    for p in net.parameters():
        if p.ndim == 2:
            weights.append({"shape": list(p.shape), "grad_std": p.grad.std().item(),
                            "grad_to_data": code.grad_to_data_ratio(p.detach(), p.grad)})
    init = [{"layer": j, **stats} for j, stats in zip(net.tanh_layers(), trace.init_tanh)]
    return {"tanh_layers": tanh, "weights": weights, "tanh_layers_init": init}


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m kata lecture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", default=None, metavar="exercises|solutions|PATH",
                   help="whose code to run (default: $KATA_IMPL or exercises)")
    p.add_argument("--data", default=None, metavar="PATH", help="names.txt (default: $MAKEMORE_NAMES, "
                   "the user cache, else a download from the makemore repository)")
    p.add_argument("--steps", type=_positive, default=200_000, help="loss-log steps per stage (default 200,000)")
    p.add_argument("--part", choices=("loss-log", "deep-net", "all"), default="all")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR", help="write the deep net's four PNGs here")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every figure printed as JSON")
    p.add_argument("--deep-steps", type=_positive, default=deepnet.STEPS,
                   help=f"deep-net steps (default {deepnet.STEPS:,}, as the notebook)")
    p.add_argument("--no-batchnorm", action="store_true", help="the deep net without BatchNorm1d layers")
    p.add_argument("--lecture-batchnorm", action="store_true",
                   help="the deep net with the notebook's own BatchNorm1d (unbiased variance) instead of yours: "
                        "reproduces the notebook's printed table")
    p.add_argument("--gain", type=_number, default=None, metavar="G",
                   help="multiply the deep net's Linear weights (default 1 with batch norm, 5/3 without)")
    return p.parse_args(argv)


def _number(text: str) -> float:
    """A float, or a fraction such as 5/3 (the tanh gain)."""
    try:
        top, _, bottom = text.partition("/")
        return float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (examples: 1, 3, 5/3)") from None


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of steps")
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = ["loss-log", "deep-net"] if args.part == "all" else [args.part]
    # The training steps are small tensors: a second thread only adds synchronisation, and
    # with other work on the machine an oversubscribed pool is many times slower.
    torch.set_num_threads(1)
    try:
        impl = Implementation(args.impl)
        code = load_code(impl, [t for t in PROBES if any(t in PARTS[part] for part in parts)])
        dataset = kata_data.load(args.data)
    except (Unfinished, ImplNotFound, kata_data.DataError) as e:
        print(f"python -m kata lecture: {e}", file=sys.stderr)
        return 2 if isinstance(e, ImplNotFound) else 1
    print(f"python -m kata lecture: running {impl.label} ({impl.path}) on {len(dataset.Xtr):,} / "
          f"{len(dataset.Xdev):,} / {len(dataset.Xte):,} train / val / test examples")
    report = {"impl": impl.label}
    if "loss-log" in parts:
        report["loss_log"] = run_loss_log(code, dataset, args.steps)
    if "deep-net" in parts:
        report["deep_net"] = run_deep_net(code, dataset, args.deep_steps, not args.no_batchnorm,
                                          args.gain, args.plots, lecture_batchnorm=args.lecture_batchnorm)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(report), indent=1))
        print(f"wrote {args.json}")
    return 0


def _finite(value):
    """JSON has no NaN or inf: write them as null (a diverged learner run can produce them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
