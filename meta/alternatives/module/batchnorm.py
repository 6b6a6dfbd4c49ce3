"""batchnorm, module style: var_mean (biased), rsqrt, in the input's dtype."""
import torch


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    var, mean = torch.var_mean(x, dim=0, correction=0)
    xhat = (x - mean) * torch.rsqrt(var + eps)
    return xhat * gamma + beta
