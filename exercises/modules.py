# Exercise file: this one is yours. Replace each `raise NotImplementedError` with your code.
# Check it with `pytest -m modules` or `python grader.py modules`; stuck? `python grader.py --hint modules`.
"""Topic 7, modules: the lecture's Linear, BatchNorm1d and Tanh, "PyTorch-ified".

Lecture: each layer is a small class with __call__ and parameters(), shaped like torch.nn's, so a
deep net is a list of layers. Every module stores its last output in `.out` so the diagnostics
(topic 9) can look at the activations and, with out.retain_grad(), their gradients.
See kata/notes/modules.md for the viewer questions on this topic.
"""
import torch


class Linear:
    """y = x @ weight + bias.

    Formula: weight ~ randn(fan_in, fan_out) / sqrt(fan_in); bias zeros(fan_out), or None

    Shape: x: (N, fan_in) -> (N, fan_out)

    Lecture value: Linear(30, 100) draws a weight with std 1/sqrt(30) = 0.183; parameters() gives
    [weight] or [weight, bias], and the deep net built from these classes has 47,024 parameters
    with BatchNorm1d (every Linear bias=False) and 46,497 without.

    Note: torch.nn.Linear stores weight as (fan_out, fan_in) and draws it from
    uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)); the lecture uses (fan_in, fan_out) and a normal
    with std 1/sqrt(fan_in) (gain 1; the deep net multiplies by a gain afterwards).
    """

    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        raise NotImplementedError("modules: Linear.__init__ is yours to write (hint: python grader.py --hint modules)")

    def __call__(self, x):
        raise NotImplementedError("modules: Linear.__call__ is yours to write (hint: python grader.py --hint modules)")

    def parameters(self):
        raise NotImplementedError("modules: Linear.parameters is yours to write (hint: python grader.py --hint modules)")


class BatchNorm1d:
    """Batch normalization with running statistics, as torch.nn.BatchNorm1d.

    Formula (training): y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch's mean and
    BIASED var; then, without building a graph,
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * unbiased var
    Formula (eval, training = False): the same with running_mean and running_var.

    Shape: x: (N, dim) -> (N, dim); gamma, beta, running_mean, running_var: (dim,)

    Lecture value: gamma ones, beta zeros, running_mean zeros, running_var ones; the deep net
    uses momentum 0.1 and its last BatchNorm1d's gamma * 0.1.

    Note: the lecture's class uses x.var(0) (unbiased) for both; torch normalises with the biased
    var and tracks the unbiased one, and the kata follows torch. momentum is the weight of the
    new batch (torch's convention; CS231n's 0.9 is the weight of the old value). The lecture
    takes the mean with keepdim=True, which makes running_mean (1, dim) after the first update;
    the tests accept that, but (dim,) is the contract. Write the arithmetic yourself: no
    F.batch_norm or torch.nn.BatchNorm1d inside.
    """

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        raise NotImplementedError("modules: BatchNorm1d.__init__ is yours to write (hint: python grader.py --hint modules)")

    def __call__(self, x):
        raise NotImplementedError("modules: BatchNorm1d.__call__ is yours to write (hint: python grader.py --hint modules)")

    def parameters(self):
        raise NotImplementedError("modules: BatchNorm1d.parameters is yours to write (hint: python grader.py --hint modules)")


class Tanh:
    """y = tanh(x), elementwise, stored in .out; no parameters.

    Formula: out = torch.tanh(x); parameters() = []

    Shape: x: (N, C) -> (N, C)

    Lecture value: after 1,001 steps the deep net's Tanh outputs have std about 0.63-0.65 and
    1.7-2.8% of |out| > 0.97 (layer 2: std 0.63, 2.78%).

    Note: the lecture's own class; torch.nn.Tanh is the same function (and has no .out).
    """

    def __call__(self, x):
        raise NotImplementedError("modules: Tanh.__call__ is yours to write (hint: python grader.py --hint modules)")

    def parameters(self):
        raise NotImplementedError("modules: Tanh.parameters is yours to write (hint: python grader.py --hint modules)")
