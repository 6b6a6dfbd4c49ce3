"""running_stats, learner style."""
import torch


def ema_update(running, batch_stat, momentum=0.001):
    return (1 - momentum) * running + momentum * batch_stat


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    return (x - running_mean) / torch.sqrt(running_var + eps) * gamma + beta


def calibrate(preacts):
    with torch.no_grad():
        mean = preacts.mean(0)
        var = preacts.var(0, unbiased=True)
    return mean, var
