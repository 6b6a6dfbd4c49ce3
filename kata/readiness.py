"""Is a topic done enough for the lecture's code to call it? One table, read by the workbook's
experiments (`ready(...)`) and by `python -m kata lecture` before it trains anything.

Each contract name gets one quick call on a tiny input, and its value is compared with the
formula written here: a stub (NotImplementedError), a missing return, an identity batch norm or a
BatchNorm1d that returns x * 2 are all "not ready". These checks are a guard, not a grade: the
topic's tests (python grader.py, check()) are what say a topic passes, and a topic without an
entry here is ready as soon as its names are defined.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Tiny float32 inputs: a correct answer rounds differently from the formula here by a few ulps,
# while every wrong answer these guard against is off by far more than 1e-4.
ATOL, RTOL = 1e-5, 1e-4


class NotReady(Exception):
    """The quick call returned a wrong value; the message says which call and what came back."""


def _same(got, want, call: str) -> None:
    if got is None:
        raise NotReady(f"{call} returned None (a missing return?)")
    if isinstance(want, torch.Tensor):
        ok = isinstance(got, torch.Tensor) and got.shape == want.shape and \
            torch.allclose(got.detach().double(), want.double(), rtol=RTOL, atol=ATOL)
    elif isinstance(want, (list, tuple)):
        ok = isinstance(got, (list, tuple)) and len(got) == len(want)
        for g, w in zip(got, want) if ok else ():
            _same(g, w, call)
    else:
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, want, rel_tol=RTOL,
                                                                                           abs_tol=ATOL)
    if not ok:
        shown = f"a tensor of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else repr(got)[:60]
        raise NotReady(f"{call} returned {shown}, not the lecture's value")


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)  # never the global generator


X = torch.tensor([[1.0, 2.0], [3.0, 5.0], [4.0, 1.5]])  # (3, 2): no symmetric values that hide bugs
GAMMA, BETA = torch.tensor([1.5, 0.5]), torch.tensor([0.25, -1.0])


def _normalised(x, mean, var, eps=1e-5):
    return GAMMA * (x - mean) / torch.sqrt(var + eps) + BETA


def _batchnorm_train(x):
    return _normalised(x, x.mean(0), x.var(0, unbiased=False))


def _split_loss(m):
    Y = torch.tensor([1, 0, 1])
    _same(m.split_loss(lambda X_: X_ * 0.5, X, Y), F.cross_entropy(X * 0.5, Y).item(), "split_loss(...)")


def _scale_output_layer(m):
    W, b = X.clone(), torch.tensor([0.5, -2.0])
    _same(m.scale_output_layer(W, b), (W * 0.01, b * 0), "scale_output_layer(W, b)")


H = torch.tensor([[0.5, -0.999, 0.995], [0.2, -0.995, 0.3]])  # (2, 3): column 1 saturated throughout


def _kaiming_normal(m):
    w = m.kaiming_normal(30, 4, generator=_gen())
    if not isinstance(w, torch.Tensor) or tuple(w.shape) != (30, 4):
        raise NotReady(f"kaiming_normal(30, 4) returned {type(w).__name__}, not a (30, 4) tensor")


def _module_batchnorm(m):
    bn = m.BatchNorm1d(2)
    with torch.no_grad():
        bn.gamma.copy_(GAMMA)
        bn.beta.copy_(BETA)
    _same(bn(X), _batchnorm_train(X), "BatchNorm1d(2)(x) in training mode")
    bn.training = False
    mean, var = 0.1 * X.mean(0), 0.9 + 0.1 * X.var(0)  # one EMA step from zeros and ones, momentum 0.1
    _same(bn(X), _normalised(X, mean, var), "BatchNorm1d(2)(x) in eval mode, after one training step")


def _linear(m):
    layer = m.Linear(2, 3, generator=_gen())
    _same(layer(X), X @ layer.weight + layer.bias, "Linear(2, 3)(x)")


def _with_grad(p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    p.grad = grad
    return p


P, G = torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[0.1, 0.3, -0.2]])


def _zero_init_grads(m):
    Xb, Yb = torch.zeros(4, 3, dtype=torch.long), torch.tensor([0, 1, 1, 5])
    grads = m.zero_init_grads(Xb, Yb)
    if not isinstance(grads, dict) or "b2" not in grads:
        raise NotReady(f"zero_init_grads(X, Y) returned {type(grads).__name__}, not a dict of gradients")
    _same(grads["b2"], 1 / 27 - torch.bincount(Yb, minlength=27) / len(Yb), "zero_init_grads(X, Y)['b2']")


def _fold_batchnorm(m):
    W, b = torch.tensor([[0.5, -1.0], [2.0, 0.25]]), torch.tensor([0.1, -0.3])
    mean, var = torch.tensor([0.2, -0.4]), torch.tensor([1.5, 0.7])
    W2, b2 = m.fold_batchnorm(W, b, mean, var, GAMMA, BETA)
    _same(X @ W2 + b2, _normalised(X @ W + b, mean, var), "x @ W' + b' after fold_batchnorm")


def _unigram(p: torch.Tensor) -> float:
    return -(p * p.log()).sum().item()


# topic -> {contract name: a quick check that raises (NotImplementedError, NotReady, ...) unless done}
CHECKS = {
    "no_grad": {"split_loss": _split_loss},
    "initial_loss": {"expected_initial_loss": lambda m: _same(m.expected_initial_loss(27), math.log(27),
                                                              "expected_initial_loss(27)"),
                     "scale_output_layer": _scale_output_layer},
    "saturation": {"saturation_fraction": lambda m: _same(m.saturation_fraction(H), 0.5, "saturation_fraction(h)"),
                   "dead_neurons": lambda m: _same(m.dead_neurons(H).float(), torch.tensor([0.0, 1.0, 0.0]),
                                                   "dead_neurons(h)"),
                   "tanh_backward": lambda m: _same(m.tanh_backward(H, H + 1), (1 - H**2) * (H + 1),
                                                    "tanh_backward(h, grad)")},
    "kaiming": {"gain": lambda m: _same(m.gain("tanh"), 5 / 3, "gain('tanh')"),
                "kaiming_std": lambda m: _same(m.kaiming_std(30), 5 / 3 / math.sqrt(30), "kaiming_std(30)"),
                "kaiming_normal": _kaiming_normal},
    "batchnorm": {"batchnorm_forward": lambda m: _same(m.batchnorm_forward(X, GAMMA, BETA), _batchnorm_train(X),
                                                       "batchnorm_forward(x, gamma, beta)")},
    "running_stats": {
        "ema_update": lambda m: _same(m.ema_update(X[0], X[1], 0.25), 0.75 * X[0] + 0.25 * X[1],
                                      "ema_update(running, batch, 0.25)"),
        "batchnorm_eval": lambda m: _same(m.batchnorm_eval(X, X[1], X[2], GAMMA, BETA), _normalised(X, X[1], X[2]),
                                          "batchnorm_eval(x, ...)"),
        "calibrate": lambda m: _same(m.calibrate(X), (X.mean(0), X.var(0)), "calibrate(preacts)")},
    "modules": {"Linear": _linear, "BatchNorm1d": _module_batchnorm,
                "Tanh": lambda m: _same(m.Tanh()(X), torch.tanh(X), "Tanh()(x)")},
    "bias_redundancy": {
        "redundant_biases": lambda m: _same(m.redundant_biases([m.Linear(2, 2, generator=_gen()), m.BatchNorm1d(2),
                                                                m.Linear(2, 2, generator=_gen())]), [0],
                                            "redundant_biases(layers)"),
        "drop_redundant_biases": lambda m: _same(m.drop_redundant_biases([m.Linear(2, 2, generator=_gen()),
                                                                          m.BatchNorm1d(2)]), 2,
                                                 "drop_redundant_biases(layers)")},
    "diagnostics": {
        "activation_stats": lambda m: _same(m.activation_stats(H)["saturated"], 0.5, "activation_stats(t)['saturated']"),
        "grad_to_data_ratio": lambda m: _same(m.grad_to_data_ratio(P, G), (G.std() / P.std()).item(),
                                              "grad_to_data_ratio(p, grad)")},
    "update_ratio": {
        "update_to_data_ratio": lambda m: _same(m.update_to_data_ratio(P, G, 0.1),
                                                math.log10((0.1 * G).std().item() / P.std().item()),
                                                "update_to_data_ratio(p, grad, 0.1)"),
        "update_ratios": lambda m: _same(m.update_ratios([_with_grad(P.clone(), G), _with_grad(X[0].clone(), X[1])],
                                                         0.1),
                                         [math.log10((0.1 * G).std().item() / P.std().item())],
                                         "update_ratios(params, 0.1)")},
    "zero_init": {"unigram_loss": lambda m: _same(m.unigram_loss(torch.tensor([0, 1, 1])),
                                                  _unigram(torch.tensor([1 / 3, 2 / 3])), "unigram_loss(Y)"),
                  "zero_init_grads": _zero_init_grads},
    "fold_batchnorm": {"fold_batchnorm": _fold_batchnorm},
}


def problem(topic: str, code) -> tuple[str, str] | None:
    """None when every name of `topic` in `code` (a module or a namespace) passes its quick check;
    else (the name, why): "todo" for a stub's NotImplementedError, else the error or wrong value."""
    for name, check in CHECKS.get(topic, {}).items():
        try:
            check(code)  # in the caller's grad mode: zero_init_grads may rely on it being on, as a cell does
        except NotImplementedError:
            return name, "todo"
        except NotReady as e:
            return name, str(e)
        except Exception as e:  # noqa: BLE001 - learner code: any failure means "not ready"
            return name, f"{name} raised {type(e).__name__} ({e}) on a tiny input"
    return None
