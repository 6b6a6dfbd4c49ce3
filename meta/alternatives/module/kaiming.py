"""kaiming, module style: gains from math, a numpy std, torch.normal with the std."""
import math
import numbers

import numpy as np
import torch


def _leaky_slope(param):
    if param is None:
        return 0.01
    if isinstance(param, bool) or not isinstance(param, numbers.Real):
        raise ValueError(f"negative_slope {param!r} is not a valid number")
    return float(param)


def gain(nonlinearity, param=None):
    if not isinstance(nonlinearity, str):
        raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")
    if nonlinearity in ("linear", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = _leaky_slope(param)
        return math.sqrt(2.0 / (1.0 + math.pow(slope, 2)))
    if nonlinearity == "selu":
        return 0.75
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def kaiming_std(fan_in, nonlinearity="tanh"):
    return np.float64(gain(nonlinearity)) / np.sqrt(np.float64(fan_in))


def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    std = float(kaiming_std(fan_in, nonlinearity))
    return torch.normal(0.0, std, size=(fan_in, fan_out), generator=generator)
