"""The lecture's figures as PNGs (`python -m kata lecture --plots DIR`), drawn from the learner's run.

Part 1, the MLP:
  loss_log.png            each stage's training loss: log10, the mean of each 1,000 steps
  saturation_at_init.png  |h| > 0.99 on the first minibatch (white: saturated), 32 examples x 200
                          units, for the original init, the tanh fix and Kaiming
  h_at_init.png           histograms of h and hpreact on that minibatch, same three stages
  kaiming_fan_in.png      x (1000, 10) against x @ w for w * 5, w * 0.2 and w / sqrt(10)
Exercise E01:
  zero_init.png           the all-zero MLP's training loss against its floor, the unigram loss
Part 2, the deep net (viz #1-#4):
  activations.png, gradients.png, weight_gradients.png, update_ratios.png; with --at-init the
  same four at step 0, named *_at_init.png
The legends and titles carry the learner's own statistics (saturation_fraction, dead_neurons,
kaiming_std, unigram_loss, activation_stats, grad_to_data_ratio).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from kata import facts  # noqa: E402

DEEP_NET = ("activations", "gradients", "weight_gradients", "update_ratios")


class Figures:
    """The PNGs of one run, all in one folder; a file already there under the same name is
    replaced, and the message for it says so."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.existed = self.folder.is_dir() and any(self.folder.iterdir())
        self.folder.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        if self.existed:
            return f"figures: into {self.folder}, which already holds files; any with the same name is replaced"
        return f"figures: into {self.folder}"

    def save(self, fig, name: str) -> str:
        """Write `fig` as folder/name; returns the line to print."""
        path = self.folder / name
        replaced = path.exists()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return f"wrote {path}" + (" (replaced the file that was there)" if replaced else "")

    def loss_log(self, stages) -> str:
        return self.save(loss_log(stages), "loss_log.png")

    def saturation_at_init(self, firsts, code) -> str:
        return self.save(saturation_at_init(firsts, code), "saturation_at_init.png")

    def h_at_init(self, firsts) -> str:
        return self.save(h_at_init(firsts), "h_at_init.png")

    def fan_in(self, demo) -> str:
        return self.save(fan_in(demo), "kaiming_fan_in.png")

    def zero_init(self, stage, floor: float, contrast=None) -> str:
        return self.save(zero_init(stage, floor, contrast), "zero_init.png")

    def deep_net(self, net, trace, code, lr) -> list[str]:
        suffix = "_at_init" if trace.at_init else ""
        figures = deep_net(net, trace, code, lr)
        return [self.save(fig, f"{name}{suffix}.png") for name, fig in zip(DEEP_NET, figures)]


# ---------------------------------------------------------------------------------------------
# shared pieces


def smoothing_window(steps: int) -> int:
    """The lecture averages each 1,000 steps of its 200,000 (200 points); a shorter run keeps
    about 100 points."""
    return max(1, min(facts.SMOOTH, steps // 100))


def smoothed(values, window: int) -> torch.Tensor:
    """The mean of each `window` consecutive values, as the lecture's `.view(-1, 1000).mean(1)`;
    a last, partial window is left out."""
    n = len(values) // window * window
    return values[:n].view(-1, window).mean(1)  # (n // window,)


def _centres(n_points: int, window: int) -> list:
    """The step at the middle of each window: the x axis in steps rather than window numbers."""
    return ((torch.arange(n_points) + 0.5) * window).tolist()


def _colors(n):
    return [plt.get_cmap("viridis")(x) for x in torch.linspace(0.0, 0.85, n).tolist()]


def _legend_outside(ax):
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


# ---------------------------------------------------------------------------------------------
# part 1 and exercise E01


def loss_log(stages):
    """Each stage's log10 minibatch loss, smoothed as the lecture plots lossi."""
    fig, ax = plt.subplots(figsize=(12, 5), layout="constrained")
    steps = len(stages[0].losses)
    window = smoothing_window(steps)
    for color, stage in zip(_colors(len(stages)), stages):
        curve = smoothed(stage.losses.log10(), window)
        ax.plot(_centres(len(curve), window), curve.tolist(), color=color, lw=1.5, label=stage.config.title)
    ax.axvline(steps // 2, color="grey", ls=":", lw=1, label=f"lr {facts.LR} -> {facts.LR_LATE}")
    ax.set_title(f"the loss log: log10 of the minibatch loss, mean of each {window:,} steps "
                 f"(the lecture: torch.tensor(lossi).view(-1, {facts.SMOOTH}).mean(1))", fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel("log10(loss)")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def saturation_at_init(firsts, code):
    """The lecture's plt.imshow(h.abs() > 0.99, cmap='gray', interpolation='nearest') for each
    (title, first minibatch): one row per example, one column per hidden unit, white = saturated."""
    fig, axes = plt.subplots(len(firsts), 1, figsize=(13, 2.6 * len(firsts)), layout="constrained")
    for ax, (title, first) in zip(axes, firsts):
        h = first.h  # (32, 200)
        ax.imshow((h.abs() > facts.SATURATED).numpy(), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        frac = code.saturation_fraction(h, facts.SATURATED)
        dead = int(code.dead_neurons(h, facts.SATURATED).sum())
        ax.set_title(f"{title}: {frac:.2%} of |h| > {facts.SATURATED} (your saturation_fraction); dead neurons, "
                     f"white in all {h.shape[0]} rows (your dead_neurons): {dead}", fontsize=10)
        ax.set_ylabel(f"example ({h.shape[0]})")
    axes[-1].set_xlabel(f"hidden unit ({firsts[0][1].h.shape[1]})")
    fig.suptitle(f"tanh saturation on the first minibatch, at init (white: |h| > {facts.SATURATED}, where tanh's "
                 "gradient 1 - h**2 is almost 0)", fontsize=12)
    return fig


def h_at_init(firsts):
    """The lecture's plt.hist(h.view(-1).tolist(), 50) and the same of hpreact, per stage."""
    fig, axes = plt.subplots(len(firsts), 2, figsize=(13, 2.9 * len(firsts)), layout="constrained")
    for (ax_h, ax_pre), (title, first) in zip(axes, firsts):
        h, hpre = first.h.flatten(), first.hpre.flatten()
        ax_h.hist(h.numpy(), 50, histtype="stepfilled", color="tab:blue")
        sat = (h.abs() > facts.SATURATED).float().mean().item()
        ax_h.set_title(f"{title}: h = tanh(hpreact), {sat:.2%} with |h| > {facts.SATURATED}", fontsize=10)
        ax_pre.hist(hpre.numpy(), 50, histtype="stepfilled", color="tab:orange")
        ax_pre.set_title(f"{title}: hpreact, std {hpre.std().item():.2f}", fontsize=10)
    axes[-1][0].set_xlabel("h")
    axes[-1][1].set_xlabel("hpreact = embcat @ W1 + b1")
    fig.suptitle("the first minibatch at init: 32 x 200 values per histogram, 50 bins (the lecture: hpreact std "
                 + ", ".join(f"{facts.HPREACT_STD[n]:.2f}" for n in facts.HPREACT_STD) + " for these three)",
                 fontsize=12)
    return fig


def fan_in(demo):
    """The lecture's Kaiming demo: histograms of x and of y = x @ w for three scales of w; x and y
    of one row share the x axis, so the spread of y against x shows directly."""
    ys = demo["y"]
    fig, axes = plt.subplots(len(ys), 2, figsize=(12, 2.8 * len(ys)), layout="constrained")
    x = demo["x"].flatten()
    for (ax_x, ax_y), (label, y), lecture in zip(axes, ys.items(), facts.KAIMING_DEMO.values()):
        y = y.flatten()
        reach = 4 * max(x.std().item(), y.std().item())
        for ax, values, name, color in ((ax_x, x, "x", "grey"), (ax_y, y, f"x @ ({label})", "tab:blue")):
            ax.hist(values.numpy(), 50, density=True, range=(-reach, reach), histtype="stepfilled", color=color)
            ax.set_xlim(-reach, reach)
            ax.set_title(f"{name}: mean {values.mean().item():+.2f}, std {values.std().item():.2f}", fontsize=10)
        ax_y.set_title(ax_y.get_title() + f" (the lecture: {lecture:.2f})", fontsize=10)
    scale = demo["scale"]["w / sqrt(10)"]
    fig.suptitle(f"x (1000, 10) @ w (10, 200), w ~ randn: the std of x @ w grows with sqrt(fan_in); "
                 f"w / sqrt(10) (your kaiming_std(10, 'linear') = {scale:.4f}) keeps it at 1", fontsize=12)
    return fig


def zero_init(stage, floor: float, contrast=None):
    """The all-zero MLP's minibatch loss (mean of each window) against the unigram floor, with a
    stage that trains fully (the Kaiming one) for contrast when there is one."""
    fig, ax = plt.subplots(figsize=(12, 5), layout="constrained")
    steps = len(stage.losses)
    window = smoothing_window(steps)
    if contrast is not None:
        curve = smoothed(contrast.losses, window)
        ax.plot(_centres(len(curve), window), curve.tolist(), color="lightgrey", lw=1.5,
                label=f"for contrast: {contrast.config.title}")
    curve = smoothed(stage.losses, window)
    ax.plot(_centres(len(curve), window), curve.tolist(), color="tab:red", lw=1.8,
            label="every parameter zero: only b2 can learn")
    ax.axhline(floor, color="black", ls="--", lw=1.2,
               label=f"the floor: your unigram_loss of the training targets, {floor:.4f}")
    ax.axhline(facts.TRAINED_VAL, color="tab:green", ls=":", lw=1.2,
               label=f"the trained MLP: val about {facts.TRAINED_VAL:.2f} (the lecture)")
    ax.set_title(f"exercise E01: the all-zero MLP's training loss, mean of each {window:,} steps", fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


# ---------------------------------------------------------------------------------------------
# part 2: the deep net's four diagnostics


def _weight_names(net) -> list[str]:
    """'C (27, 10)', then 'layer 0 Linear (30, 100)', ...: the 2-D parameters in order."""
    names = [f"C {tuple(net.C.shape)}"]
    for i, layer in enumerate(net.layers):
        names += [f"layer {i} {type(layer).__name__} {tuple(p.shape)}" for p in layer.parameters() if p.ndim == 2]
    return names


def _histogram(ax, t, color, label):
    hy, hx = torch.histogram(t.detach().float().flatten(), bins=50, density=True)
    centres = (hx[:-1] + hx[1:]) / 2
    ax.plot(centres.tolist(), hy.tolist(), color=color, lw=1.6, label=label)


def _diagnostic(title, xlabel, ylabel):
    fig, ax = plt.subplots(figsize=(13, 4.8), layout="constrained")
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def activations(net, code, subtitle):
    fig, ax = _diagnostic(f"viz #1: activation distribution of each tanh layer\n{subtitle}",
                          f"tanh output t (dotted: |t| = {facts.DEEP_SATURATED}, the saturation threshold)", "density")
    layers = net.tanh_layers()
    for color, j in zip(_colors(len(layers)), layers):
        s = code.activation_stats(net.layers[j].out.detach())
        _histogram(ax, net.layers[j].out, color,
                   f"layer {j} (Tanh): mean {s['mean']:+.2f}, std {s['std']:.2f}, saturated {s['saturated']:.2%}")
    for edge in (-facts.DEEP_SATURATED, facts.DEEP_SATURATED):
        ax.axvline(edge, color="grey", ls=":", lw=1)
    _legend_outside(ax)
    return fig


def gradients(net, subtitle):
    fig, ax = _diagnostic(f"viz #2: gradient distribution at each tanh layer's output\n{subtitle}",
                          "d loss / d t", "density")
    layers = net.tanh_layers()
    for color, j in zip(_colors(len(layers)), layers):
        grad = net.layers[j].out.grad
        _histogram(ax, grad, color, f"layer {j} (Tanh): mean {grad.mean().item():+.2e}, std {grad.std().item():.2e}")
    _legend_outside(ax)
    return fig


def weight_gradients(net, code, subtitle):
    fig, ax = _diagnostic(f"viz #3: weight gradient distribution\n{subtitle}", "d loss / d weight", "density")
    weights = [p for p in net.parameters() if p.ndim == 2]
    for color, name, p in zip(_colors(len(weights)), _weight_names(net), weights):
        ratio = code.grad_to_data_ratio(p.detach(), p.grad)
        _histogram(ax, p.grad, color, f"{name}: grad std {p.grad.std().item():.2e}, grad:data {ratio:.2e}")
    _legend_outside(ax)
    return fig


def update_ratios(net, trace, subtitle, lr):
    ud = torch.tensor(trace.update_ratios)  # (steps, n_weights)
    names = _weight_names(net)
    if len(ud) == 1:  # at init there is one step: a point per weight
        fig, ax = _diagnostic(f"viz #4: update:data ratio of each weight (lr {lr})\n{subtitle}",
                              "weight", "log10( (lr * grad).std() / data.std() )")
        ax.scatter(range(len(names)), ud[0].tolist(), c=_colors(len(names)), s=40, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    else:
        fig, ax = _diagnostic(f"viz #4: update:data ratio over training (lr {lr})\n{subtitle}",
                              "step", "log10( (lr * grad).std() / data.std() )")
        for k, (color, name) in enumerate(zip(_colors(len(names)), names)):
            ax.plot(ud[:, k].tolist(), color=color, lw=1.0, label=name)
    ax.axhline(facts.UPDATE_RATIO_GUIDE, color="black", ls="--", lw=1.5, label="-3: updates about 1/1000 of the data")
    _legend_outside(ax)
    return fig


def deep_net(net, trace, code, lr) -> list:
    """viz #1-#4 of the deep net's last step (at init: step 0), as four figures."""
    kind = "with BatchNorm1d" if net.batchnorm else "without batch norm"
    if trace.at_init:
        when = "at step 0: the first minibatch, before any update"
        ratio_when = "the update step 0 would make, against the data at init"
    else:
        when = f"after {len(trace.losses):,} steps (last minibatch)"
        ratio_when = f"{len(trace.losses):,} steps"
    subtitle = f"deep net {kind}, gain {net.gain:.3g}, {when}"
    return [activations(net, code, subtitle), gradients(net, subtitle), weight_gradients(net, code, subtitle),
            update_ratios(net, trace, f"deep net {kind}, gain {net.gain:.3g}, {ratio_when}", lr)]
