"""kaiming, terse style: a table of callables, x ** -0.5, normal_ with the std."""
import math

import torch

_GAINS = {
    "linear": lambda p: 1.0,
    "sigmoid": lambda p: 1.0,
    "tanh": lambda p: 5.0 / 3.0,
    "relu": lambda p: 2.0 ** 0.5,
    "leaky_relu": lambda p: (2.0 / (1.0 + (0.01 if p is None else p) ** 2)) ** 0.5,
    "selu": lambda p: 0.75,
}


def gain(nonlinearity, param=None):
    try:
        fn = _GAINS[nonlinearity]
    except (KeyError, TypeError):
        raise ValueError(f"no gain for {nonlinearity!r}") from None
    return float(fn(param))


def kaiming_std(fan_in, nonlinearity="tanh"):
    return gain(nonlinearity) * float(fan_in) ** -0.5


def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    return torch.empty(fan_in, fan_out).normal_(0.0, kaiming_std(fan_in, nonlinearity), generator=generator)
