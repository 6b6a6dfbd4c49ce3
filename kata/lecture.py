"""`python -m kata lecture`: train the lecture's networks with your own code, next to its numbers.

    python -m kata lecture                          # everything, the lecture's full 200,000 steps
    python -m kata lecture --steps 5000             # a quick run
    python -m kata lecture --plots plots/           # and the lecture's figures as PNGs
    python -m kata lecture --part zero-init         # exercise E01: every parameter starts at zero
    python -m kata lecture --part deep-net --no-batchnorm --gain 5/3 --at-init --plots plots/
    python -m kata lecture --part deep-net --lecture-batchnorm   # the notebook's table, figure for figure
    python -m kata lecture --impl solutions --json out.json

Part 1 (loss-log) trains the MLP in the lecture's five stages. Exercise E01 (zero-init) trains the
same MLP from all-zero parameters. Part 2 (deep-net) trains the deep net built from your Linear,
BatchNorm1d and Tanh for 1,001 steps and prints the per-layer tables (--at-init: at step 0).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from kata import data as kata_data
from kata import deepnet, facts, fastmlp, mlp, readiness
from kata.loader import Implementation, ImplNotFound, LearnerImportError

PARTS = {  # in the order they run and print
    "loss-log": ("no_grad", "initial_loss", "saturation", "kaiming", "batchnorm", "running_stats"),
    "zero-init": ("no_grad", "zero_init"),
    "deep-net": ("no_grad", "modules", "diagnostics", "update_ratio"),
}
MLP_STAGES = {"loss-log": facts.STAGES, "zero-init": ("zero_init",)}  # the MLP stages each part trains


class Unfinished(Exception):
    """Some topics a part needs are not done; the message is the one line to print."""


def load_code(impl: Implementation, topics) -> SimpleNamespace:
    """The learner's functions of `topics` in one namespace, each given its quick check first
    (kata/readiness.py): a topic still raising NotImplementedError, failing to import, raising or
    returning a wrong value is reported before any training starts."""
    code, todo, broken = SimpleNamespace(), [], []
    for topic in topics:
        try:
            module = impl.load(topic)
        except LearnerImportError as e:
            broken.append(f"{topic} ({e})")
            continue
        found = readiness.problem(topic, module)
        if found and found[1] == "todo":
            todo.append(topic)
            continue
        if found:
            broken.append(f"{topic} ({found[1]})")
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
# the MLP: part 1 and exercise E01 train together, on the one fast path


@dataclass
class MLPRun:
    stages: dict  # name -> mlp.Stage, trained
    first: dict  # name -> mlp.FirstBatch: each stage's step-0 minibatch, before any update
    steps: int


def train_mlp(code, dataset, names, steps: int, out=print) -> MLPRun:
    """Init the stages `names`, keep each one's first minibatch, and train them all
    (kata/fastmlp.py: the stages without batch norm as one batched model, batch norm alone)."""
    stages = [mlp.init_stage(n, code, dataset.vocab_size, dataset.Xtr.shape[1]) for n in names]
    first = {s.name: mlp.first_batch(s, code, dataset.Xtr, dataset.Ytr) for s in stages}
    n_groups = len(fastmlp.groups(stages))
    parallel = fastmlp.use_parallel(steps, n_groups)
    shown = ", ".join(mlp.CONFIGS[n].title if n == "zero_init" else n for n in names)
    out(f"\nThe lecture's MLP (n_embd {facts.N_EMBD}, n_hidden {facts.N_HIDDEN}, batch {facts.BATCH}), "
        f"{steps:,} steps, lr {facts.LR} then {facts.LR_LATE} from step {steps // 2:,}: {shown}")
    if n_groups == 1 or parallel:  # with two processes, the bar follows the stages without batch norm
        progress = Progress(steps, "MLP")
    else:  # in one process the stages without batch norm train first, then batch norm
        progress = Progress(n_groups * steps, "MLP (the others, then batch norm)")
    started = time.perf_counter()
    try:
        fastmlp.train_all(stages, code, dataset.Xtr, dataset.Ytr, steps, progress, parallel)
    finally:
        progress.close()
    out(f"trained in {time.perf_counter() - started:.0f} s"
        + (" (batch norm in a second process)" if parallel else ""))
    return MLPRun({s.name: s for s in stages}, first, steps)


# ---------------------------------------------------------------------------------------------
# part 1: the loss log


def run_loss_log(code, dataset, run: MLPRun, plots=None, out=print) -> tuple[list[dict], dict]:
    """The five stages' loss log beside the lecture's; returns (rows, the fan-in demo's stds)."""
    rows = [_loss_log_row(code, dataset, run.stages[name], run.first[name]) for name in facts.STAGES]
    demo = mlp.fan_in_demo(code, torch.Generator().manual_seed(facts.SEED))
    demo_std = {k: y.std().item() for k, y in demo["y"].items()}
    _print_loss_log(rows, demo, demo_std, run.steps, out)
    if plots is not None:
        stages = [run.stages[n] for n in facts.STAGES]
        firsts = [(run.stages[n].config.title, run.first[n]) for n in SATURATION_STAGES]
        _wrote(out, plots.loss_log(stages), plots.saturation_at_init(firsts, code), plots.h_at_init(firsts),
               plots.fan_in(demo))
    return rows, demo_std


def _loss_log_row(code, dataset, stage, first) -> dict:
    """One stage's figures: at init from its first minibatch, after training from the whole splits."""
    r = {"stage": stage.name, "title": stage.config.title, "init_loss": first.loss,
         "init_saturation": float(code.saturation_fraction(first.h)),
         "init_hpreact_std": first.hpre.std().item(),
         "init_dead_neurons": int(code.dead_neurons(first.h).sum()),
         "expected_init_loss": code.expected_initial_loss(dataset.vocab_size),
         **mlp.evaluate(stage, code, dataset)}
    r["lecture_train"], r["lecture_val"] = facts.LOSS_LOG[stage.name]
    r["final_batch_loss"] = stage.losses[-1000:].mean().item()
    if stage.running is not None:
        r["bn_backward"] = stage.bn_backward
    return r


def _print_loss_log(rows, demo, demo_std, steps, out):
    full = steps == facts.STEPS
    note = "lecture (200k steps)" if full else f"lecture (200k; this run {steps:,})"
    out(f"\nPart 1: the loss log\n{'stage':<44} {'init loss':>9} {'sat@init':>8} {'train':>7} {'val':>7}   {note}")
    for r in rows:
        out(f"{r['title']:<44} {r['init_loss']:>9.4f} {r['init_saturation']:>8.2%} {r['train']:>7.4f} "
            f"{r['val']:>7.4f}   {r['lecture_train']:.4f} / {r['lecture_val']:.4f}"
            + (f"  (val {r['val'] - r['lecture_val']:+.4f})" if full else ""))
    by = {r["stage"]: r for r in rows}
    out(f"expected initial loss -log(1/vocab_size) = {rows[0]['expected_init_loss']:.4f}; the lecture: "
        f"{facts.INIT_LOSS['original']:.2f} naive, {facts.INIT_LOSS['softmax']:.4f} after scale_output_layer")

    out(f"\n{'the first minibatch at init':<37} {'original':>9} {'tanh fix':>9} {'Kaiming':>9}   the lecture")
    for label, key, fmt, lecture in (("saturated, your saturation_fraction", "init_saturation", ".2%", facts.INIT_SATURATION),
                                      ("hpreact std", "init_hpreact_std", ".2f", facts.HPREACT_STD),
                                      ("dead neurons, your dead_neurons", "init_dead_neurons", "d", facts.DEAD_NEURONS)):
        ours = "".join(f" {by[n][key]:>9{fmt}}" for n in SATURATION_STAGES)
        theirs = " / ".join(f"{lecture[n]:{fmt}}" for n in SATURATION_STAGES)
        out(f"  {label:<35}{ours}   {theirs}")
    out("Kaiming's fan-in demo, std of x (1000, 10) @ w (10, 200): "
        + ", ".join(f"{k} {v:.2f}" for k, v in demo_std.items())
        + f" (1 / sqrt(10) is your kaiming_std(10, 'linear') = {demo['scale']['w / sqrt(10)']:.4f}); the lecture: "
        + ", ".join(f"{v:.2f}" for v in facts.KAIMING_DEMO.values()))

    bn = by["batchnorm"]
    cal = bn["calibrated"]
    out(f"\nbatch norm at inference: running statistics (EMA) train {bn['train']:.4f} val {bn['val']:.4f}; "
        f"calibrated on the training set train {cal['train']:.4f} val {cal['val']:.4f} "
        f"(the lecture: almost the same, val {facts.BN_EMA_VAL} with the EMA)")
    out(f"your batchnorm_forward ran every step; its gradient: {bn['bn_backward']}")


SATURATION_STAGES = ("original", "tanh", "kaiming")  # the lecture's saturation plots: before and after the fixes


# ---------------------------------------------------------------------------------------------
# exercise E01: every parameter zero


def run_zero_init(code, dataset, run: MLPRun, plots=None, out=print, kaiming: dict | None = None) -> dict:
    """The all-zero MLP after training: what moved, and its loss against the unigram floor.
    kaiming: the loss log's Kaiming row, when part 1 ran too (a trained MLP to compare with)."""
    stage, first = run.stages["zero_init"], run.first["zero_init"]
    grads = code.zero_init_grads(first.X, first.Y, dataset.vocab_size, facts.N_EMBD, facts.N_HIDDEN)
    result = {
        "steps": run.steps, **mlp.evaluate(stage, code, dataset),
        "unigram_loss": code.unigram_loss(dataset.Ytr, dataset.vocab_size),
        "unigram_loss_val": code.unigram_loss(dataset.Ydev, dataset.vocab_size),
        "moved": stage.moved(),
        "step0_nonzero_grads": [k for k, g in grads.items() if bool((g != 0).any())],
        "init_loss": first.loss, "final_batch_loss": stage.losses[-1000:].mean().item(),
    }
    still = [k for k in stage.params if k not in result["moved"]]
    out("\nExercise E01: every weight and bias starts at zero (the same MLP, seed, steps and lr schedule)")
    out(f"  step 0, your zero_init_grads on the first minibatch: non-zero gradients for "
        f"{_names(result['step0_nonzero_grads'])}")
    out(f"  after {run.steps:,} steps the parameters that moved: {_names(result['moved'])}; "
        f"still exactly zero: {_names(still)}")
    out(f"  train {result['train']:.4f}  val {result['val']:.4f}   the floor, your unigram_loss of the targets: "
        f"train {result['unigram_loss']:.4f}  val {result['unigram_loss_val']:.4f} "
        f"(the lecture's data: {facts.UNIGRAM_LOSS['train']:.4f}, {facts.UNIGRAM_LOSS['val']:.4f})")
    out(f"  the trained MLP instead: val {facts.TRAINED_VAL:.2f} (the lecture)"
        + (f"; your Kaiming stage above: {kaiming['val']:.4f}" if kaiming else ""))
    m = facts.ZERO_INIT_MEASURED
    out(f"  (the lecture's own loop, measured: train {m['train']:.4f} val {m['val']:.4f} after {m['steps']:,} "
        f"steps, only {_names(m['moved'])} moved)")
    if plots is not None:
        _wrote(out, plots.zero_init(stage, result["unigram_loss"], contrast=run.stages.get("kaiming")))
    return result


def _names(keys) -> str:
    return ", ".join(keys) if keys else "none"


def _wrote(out, *messages):
    for message in messages:
        out(message)


# ---------------------------------------------------------------------------------------------
# part 2: the deep net


def run_deep_net(code, dataset, steps: int, batchnorm: bool, gain, plots=None, out=print,
                 lecture_batchnorm: bool = False, at_init: bool = False) -> dict:
    """Build the deep net from the learner's modules, train it (or, at_init, take step 0's forward
    and backward pass only) and print the lecture's per-layer tables."""
    net = deepnet.build(code, dataset.vocab_size, dataset.Xtr.shape[1], batchnorm=batchnorm, gain=gain,
                        lecture_batchnorm=lecture_batchnorm)
    n_params = sum(p.numel() for p in net.parameters())
    kind = "without batch norm"
    if batchnorm:
        kind = "with the notebook's BatchNorm1d" if lecture_batchnorm else "with your BatchNorm1d"
    when = "at step 0: the first minibatch's forward and backward pass, no update" if at_init else \
        f"{steps:,} steps at lr {facts.DEEP_LR}"
    lecture_params = facts.PARAMETERS["deep_batchnorm" if batchnorm else "deep"]
    out(f"\nPart 2: the deep net {kind} (gain {net.gain:.4g}, {n_params:,} parameters; the lecture: "
        f"{lecture_params:,}), {when}")
    if at_init:
        trace = deepnet.at_init(net, dataset.Xtr, dataset.Ytr, code.activation_stats, code.update_ratios)
    else:
        progress = Progress(steps, "deep net")
        try:
            trace = deepnet.train(net, dataset.Xtr, dataset.Ytr, steps, stats=code.activation_stats,
                                  ratios=code.update_ratios, progress=progress)
        finally:
            progress.close()
    tables = _deep_net_tables(net, trace, code)
    written = []
    if plots is not None:  # before evaluation: the plots show the last step's .out and .grad
        written = plots.deep_net(net, trace, code, lr=facts.DEEP_LR)
    deepnet.set_training(net, False)
    result = {
        "steps": len(trace.losses) if not at_init else 0, "at_init": at_init, "batchnorm": batchnorm,
        "gain": net.gain, "parameters": n_params,
        "batchnorm_variance": None if not batchnorm else "unbiased (the notebook's class)" if lecture_batchnorm
        else "biased (yours, as torch)",
        "step0_loss": trace.losses[0],
        **_evaluate_net(code, net, dataset),
        **tables,
        "update_ratios": trace.update_ratios, "losses": trace.losses,
    }
    lecture = batchnorm and net.gain == 1.0 and steps == facts.DEEP_STEPS and not at_init
    ref = facts.DEEP_NET if lecture else None
    _print_deep_net(result, ref, steps, at_init, lecture_batchnorm, out)
    _wrote(out, *written)
    return result


def _print_deep_net(result, ref, steps, at_init, lecture_batchnorm, out):
    line = f"step-0 loss {result['step0_loss']:.4f}"
    if ref or at_init and result["batchnorm"] and result["gain"] == 1.0:
        line += f" (lecture {facts.DEEP_NET['step0_loss']:.4f})"
    if not at_init:
        line += f"; after {steps:,} steps train {result['train']:.4f}, val {result['val']:.4f}"
        line += f" (lecture {ref['train']:.4f}, {ref['val']:.4f})" if ref else ""
    out(line)
    if ref and not lecture_batchnorm:
        out("  the small differences from the notebook come from one convention: its BatchNorm1d divides the "
            "variance by N - 1 (x.var(0)),\n  yours by N, as torch does. `--lecture-batchnorm` runs the "
            "notebook's class and reproduces its table.")

    after = "at step 0" if at_init else "after the last step"
    out(f"\nviz #1 and #2: tanh layers {after} (saturated: |t| > {facts.DEEP_SATURATED})")
    init_columns = not at_init  # at init the two column groups would be the same numbers
    out(f"{'layer':>5} {'mean':>7} {'std':>6} {'saturated':>9} {'grad std':>10}"
        + (f" {'init std':>9} {'init sat':>9}" if init_columns else "")
        + ("   lecture: mean std saturated grad std" if ref else ""))
    for k, (row, init) in enumerate(zip(result["tanh_layers"], result["tanh_layers_init"])):
        line = f"{row['layer']:>5} {row['mean']:>+7.2f} {row['std']:>6.2f} {row['saturated']:>9.2%} {row['grad_std']:>10.2e}"
        if init_columns:
            line += f" {init['std']:>9.2f} {init['saturated']:>9.2%}"
        if ref:
            _, m, s, sat, gs = ref["tanh"][k]
            line += f"   {m:+.2f} {s:.2f} {sat:.2%} {gs:.2e}"
        out(line)

    out(f"\nviz #3: weight gradients {after}")
    out(f"{'shape':>12} {'grad std':>10} {'grad:data':>10}" + ("   lecture: grad std  grad:data" if ref else ""))
    for k, row in enumerate(result["weights"]):
        line = f"{str(tuple(row['shape'])):>12} {row['grad_std']:>10.2e} {row['grad_to_data']:>10.2e}"
        if ref:
            line += f"   {ref['weights'][k][1]:.2e}  {ref['weights'][k][2]:.2e}"
        out(line)

    ud = torch.tensor(result["update_ratios"])  # (steps, n_weights)
    last = ud[-min(100, len(ud)):].mean(0)
    which = "of the update step 0 would make" if at_init else f"mean of the last {min(100, len(ud))} steps"
    out(f"\nviz #4: update:data ratio, log10((lr * grad).std() / data.std()), {which} "
        f"(the lecture's guide: about {facts.UPDATE_RATIO_GUIDE})")
    out("  " + "  ".join(f"{tuple(w['shape'])} {v:+.2f}" for w, v in zip(result["weights"], last.tolist())))


def _evaluate_net(code, net, dataset) -> dict:
    logits = mlp.blockwise(net)
    return {"train": code.split_loss(logits, dataset.Xtr, dataset.Ytr),
            "val": code.split_loss(logits, dataset.Xdev, dataset.Ydev)}


def _deep_net_tables(net, trace, code) -> dict:
    """The lecture's per-layer figures of the last step (at init: step 0), with the learner's functions."""
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
    p.add_argument("--steps", type=_positive, default=facts.STEPS,
                   help=f"MLP steps per stage, for the loss log and zero-init (default {facts.STEPS:,})")
    p.add_argument("--part", choices=(*PARTS, "all"), default="all")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR",
                   help="write the lecture's figures here as PNGs (the folder is created if needed; each "
                        "file already there under the same name is replaced, and said so)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every figure printed as JSON")
    p.add_argument("--deep-steps", type=_positive, default=facts.DEEP_STEPS,
                   help=f"deep-net steps (default {facts.DEEP_STEPS:,}, as the notebook)")
    p.add_argument("--at-init", action="store_true",
                   help="inspect the deep net at step 0 instead of training it: the first minibatch's forward "
                        "and backward pass, no update (tables and --plots figures, named *_at_init.png)")
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
    parts = list(PARTS) if args.part == "all" else [args.part]
    # The training steps are small tensors: a second thread only adds synchronisation, and
    # with other work on the machine an oversubscribed pool is many times slower.
    torch.set_num_threads(1)
    try:
        impl = Implementation(args.impl)
        code = load_code(impl, [t for t in readiness.CHECKS if any(t in PARTS[part] for part in parts)])
        dataset = kata_data.load(args.data)
    except (Unfinished, ImplNotFound, kata_data.DataError) as e:
        print(f"python -m kata lecture: {e}", file=sys.stderr)
        return 2 if isinstance(e, ImplNotFound) else 1
    print(f"python -m kata lecture: running {impl.label} ({impl.path}) on {len(dataset.Xtr):,} / "
          f"{len(dataset.Xdev):,} / {len(dataset.Xte):,} train / val / test examples")
    plots = None
    if args.plots is not None:
        from kata import plots as kata_plots  # matplotlib only when figures are asked for
        plots = kata_plots.Figures(args.plots)
        print(plots.describe())
    report = {"impl": impl.label}
    names = [n for part in parts for n in MLP_STAGES.get(part, ())]
    if names:
        run = train_mlp(code, dataset, names, args.steps)
        if "loss-log" in parts:
            report["loss_log"], report["kaiming_fan_in"] = run_loss_log(code, dataset, run, plots)
        if "zero-init" in parts:
            kaiming = next((r for r in report.get("loss_log", []) if r["stage"] == "kaiming"), None)
            report["zero_init"] = run_zero_init(code, dataset, run, plots, kaiming=kaiming)
    if "deep-net" in parts:
        report["deep_net"] = run_deep_net(code, dataset, args.deep_steps, not args.no_batchnorm, args.gain, plots,
                                          lecture_batchnorm=args.lecture_batchnorm, at_init=args.at_init)
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
