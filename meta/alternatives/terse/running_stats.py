"""running_stats, terse style: lerp, rsqrt, addcmul, float64 calibration."""
import torch


def ema_update(running, batch_stat, momentum=0.001):
    return torch.lerp(running, batch_stat.to(running.dtype), momentum)


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    return torch.addcmul(beta, x - running_mean, gamma * torch.rsqrt(running_var + eps))


def calibrate(preacts):
    p = preacts.detach()
    pd = p.double()
    mean = pd.mean(dim=0)
    var = (pd - mean).pow(2).sum(dim=0) / (pd.shape[0] - 1)
    return mean.to(p.dtype), var.to(p.dtype)
