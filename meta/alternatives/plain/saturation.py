"""saturation, learner style."""
import torch


def saturation_fraction(h, threshold=0.99):
    saturated = h.abs() > threshold
    return saturated.float().mean().item()


def dead_neurons(h, threshold=0.99):
    saturated = h.abs() > threshold
    return saturated.all(dim=0)


def tanh_backward(h, grad_out):
    return (1 - h**2) * grad_out
