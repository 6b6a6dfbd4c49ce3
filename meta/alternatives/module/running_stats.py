"""running_stats, module style: torch.add with alpha, rsqrt, var_mean for calibration."""
import torch


def ema_update(running, batch_stat, momentum=0.001):
    return torch.add(torch.mul(running, 1 - momentum), batch_stat, alpha=momentum)


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    scale = gamma * torch.rsqrt(running_var + eps)
    return (x - running_mean).mul(scale).add(beta)


def calibrate(preacts):
    with torch.no_grad():
        var, mean = torch.var_mean(preacts, dim=0, correction=1)
    return mean, var
