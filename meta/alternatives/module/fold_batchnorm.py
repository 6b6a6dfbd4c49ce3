"""fold_batchnorm, module style: rsqrt scale, the columns scaled through a broadcast row."""
import torch


def fold_batchnorm(W, b, running_mean, running_var, gamma, beta, eps=1e-5):
    s = torch.rsqrt(running_var + eps) * gamma
    W_folded = torch.mul(W, s.unsqueeze(0))  # column j times s[j]
    centred = torch.neg(running_mean) if b is None else torch.sub(b, running_mean)
    b_folded = torch.add(beta, centred * s)
    return W_folded, b_folded
