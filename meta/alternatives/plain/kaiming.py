"""kaiming, learner style: a dict of gains and math.sqrt."""
import math

import torch


def gain(nonlinearity, param=None):
    if nonlinearity == "linear" or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        else:
            slope = param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def kaiming_std(fan_in, nonlinearity="tanh"):
    return gain(nonlinearity) / math.sqrt(fan_in)


def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    W = torch.randn(fan_in, fan_out, generator=generator)
    return W * (gain(nonlinearity) / fan_in**0.5)
