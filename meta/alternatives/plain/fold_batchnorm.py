"""fold_batchnorm, learner style."""
import torch


def fold_batchnorm(W, b, running_mean, running_var, gamma, beta, eps=1e-5):
    scale = gamma / torch.sqrt(running_var + eps)
    W_folded = W * scale
    if b is None:
        b = torch.zeros_like(running_mean)
    b_folded = (b - running_mean) * scale + beta
    return W_folded, b_folded
