"""The lecture's four diagnostic figures of the deep net, as PNGs (`python -m kata lecture --plots DIR`).

viz #1 activations and viz #2 their gradients: a histogram per tanh layer; viz #3 the weights'
gradients; viz #4 the update:data ratio of every weight over the steps, with the -3 guide line.
The legends carry the learner's own statistics (activation_stats, grad_to_data_ratio).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

FILES = ("activations.png", "gradients.png", "weight_gradients.png", "update_ratios.png")


def _colors(n):
    return [plt.get_cmap("viridis")(x) for x in torch.linspace(0.0, 0.85, n).tolist()]


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


def _finish(fig, ax, title, xlabel, ylabel, path):
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def activations(net, code, path, subtitle):
    fig, ax = plt.subplots(figsize=(13, 4.8))
    layers = net.tanh_layers()
    for color, j in zip(_colors(len(layers)), layers):
        s = code.activation_stats(net.layers[j].out.detach())
        _histogram(ax, net.layers[j].out, color,
                   f"layer {j} (Tanh): mean {s['mean']:+.2f}, std {s['std']:.2f}, saturated {s['saturated']:.2%}")
    for edge in (-0.97, 0.97):
        ax.axvline(edge, color="grey", ls=":", lw=1)
    return _finish(fig, ax, f"viz #1: activation distribution of each tanh layer\n{subtitle}",
                   "tanh output t (dotted: |t| = 0.97, the saturation threshold)", "density", path)


def gradients(net, path, subtitle):
    fig, ax = plt.subplots(figsize=(13, 4.8))
    layers = net.tanh_layers()
    for color, j in zip(_colors(len(layers)), layers):
        grad = net.layers[j].out.grad
        _histogram(ax, grad, color, f"layer {j} (Tanh): mean {grad.mean().item():+.2e}, std {grad.std().item():.2e}")
    return _finish(fig, ax, f"viz #2: gradient distribution at each tanh layer's output\n{subtitle}",
                   "d loss / d t", "density", path)


def weight_gradients(net, code, path, subtitle):
    fig, ax = plt.subplots(figsize=(13, 4.8))
    weights = [p for p in net.parameters() if p.ndim == 2]
    for color, name, p in zip(_colors(len(weights)), _weight_names(net), weights):
        ratio = code.grad_to_data_ratio(p.detach(), p.grad)
        _histogram(ax, p.grad, color, f"{name}: grad std {p.grad.std().item():.2e}, grad:data {ratio:.2e}")
    return _finish(fig, ax, f"viz #3: weight gradient distribution\n{subtitle}",
                   "d loss / d weight", "density", path)


def update_ratios(net, trace, path, subtitle, lr):
    fig, ax = plt.subplots(figsize=(13, 4.8))
    ud = torch.tensor(trace.update_ratios)  # (steps, n_weights)
    names = _weight_names(net)
    for k, (color, name) in enumerate(zip(_colors(len(names)), names)):
        ax.plot(ud[:, k].tolist(), color=color, lw=1.0, label=name)
    ax.axhline(-3, color="black", ls="--", lw=1.5, label="-3: updates about 1/1000 of the data")
    return _finish(fig, ax, f"viz #4: update:data ratio over training (lr {lr})\n{subtitle}",
                   "step", "log10( (lr * grad).std() / data.std() )", path)


def write_all(net, trace, code, directory, lr) -> list[Path]:
    """Write the four PNGs into `directory` (created if needed); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "with BatchNorm1d" if net.batchnorm else "without batch norm"
    subtitle = f"deep net {kind}, gain {net.gain:.3g}, after {len(trace.losses):,} steps (last minibatch)"
    a, g, w, u = (directory / f for f in FILES)
    return [
        activations(net, code, a, subtitle),
        gradients(net, g, subtitle),
        weight_gradients(net, code, w, subtitle),
        update_ratios(net, trace, u, f"deep net {kind}, gain {net.gain:.3g}", lr),
    ]
