"""saturation, module style: count_nonzero, a column count against N, and 1 - h^2 via square."""
import numpy as np
import torch


def _saturated(h, threshold):
    # compared in h's own dtype, strictly greater
    return torch.abs(h.detach()) > threshold


def saturation_fraction(h, threshold=0.99):
    mask = _saturated(h, threshold)
    return np.float64(torch.count_nonzero(mask).item()) / np.float64(mask.numel())


def dead_neurons(h, threshold=0.99):
    mask = _saturated(h, threshold)
    # a column is dead when every one of its N rows is saturated
    return torch.count_nonzero(mask, dim=0) == mask.shape[0]


def tanh_backward(h, grad_out):
    return torch.mul(1 - torch.square(h), grad_out)
