"""batchnorm, terse style: var_mean in float64, rsqrt, cast back."""
import torch


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    xd = x.double()
    var, mean = torch.var_mean(xd, dim=0, correction=0)
    y = torch.addcmul(beta.double(), (xd - mean) * torch.rsqrt(var + eps), gamma.double())
    return y.to(torch.result_type(x, gamma))
