"""Topic 6, running_stats: estimate the mean and variance for inference.

Lecture: at test time there is no batch to normalise over, so BatchNorm keeps running estimates
(an exponential moving average updated during training), or calibrates them once on the whole
training set after training. Either gives almost the same loss (val 2.1057 with the EMA).
See kata/notes/running_stats.md for the viewer questions on this topic.
"""
import torch


def ema_update(running, batch_stat, momentum=0.001):
    """One step of the exponential moving average: (1 - momentum) * running + momentum * batch_stat.

    Formula: running' = (1 - m) * running + m * batch_stat

    Shape: running: (C,), batch_stat: (C,) -> (C,), a new tensor

    Lecture value: the lecture's inline BN uses 0.999 * running + 0.001 * batch (m = 0.001, for
    noisy batches of 32); torch.nn.BatchNorm1d defaults to momentum 0.1.

    Note: torch's momentum is the weight of the NEW value. CS231n and Keras write the same filter
    with momentum 0.9 or 0.99 as the weight of the OLD value; the kata follows torch. It is a
    first-order IIR filter: a constant batch value b is approached as b + (1 - m)**k * (r0 - b).
    """
    # BEGIN SOLUTION
    with torch.no_grad():
        return (1 - momentum) * running + momentum * batch_stat
    # END SOLUTION


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Inference-mode batch norm: normalise with the running statistics, not the batch's.

    Formula: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

    Shape: x: (N, C), running_mean, running_var, gamma, beta: (C,) -> (N, C)

    Lecture value: with the EMA estimates the MLP's val loss is 2.1057. Works for N = 1: each
    row's output depends on that row alone.

    Note: the lecture's inline BN keeps a running std and has no eps; the kata follows its class
    version and torch (F.batch_norm with training=False): a running VARIANCE, eps inside the sqrt.
    Must not call F.batch_norm or nn.BatchNorm1d.
    """
    # BEGIN SOLUTION
    return gamma * (x - running_mean) / torch.sqrt(running_var + eps) + beta
    # END SOLUTION


def calibrate(preacts):
    """The mean and variance of every feature over the whole training set, after training.

    Formula: mean = preacts.mean(0), var = preacts.var(0) (unbiased, divide by N - 1)

    Shape: preacts: (N, C) -> (mean: (C,), var: (C,)), with no autograd graph

    Lecture value: these give almost the same val loss as the EMA estimates (2.1057).

    Note: unbiased, the same convention as torch's running_var (the normalisation itself uses
    the biased one).
    """
    # BEGIN SOLUTION
    with torch.no_grad():
        return preacts.mean(0), preacts.var(0)  # (C,), (C,)
    # END SOLUTION
