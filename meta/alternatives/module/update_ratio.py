"""update_ratio, module style: numpy log10 of a numpy std ratio."""
import numpy as np
import torch


def _np(t):
    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.double()
    return t.numpy().astype(np.float64)


def update_to_data_ratio(param, grad, lr):
    update = np.float64(lr) * _np(grad)
    return np.log10(update.std(ddof=1) / _np(param).std(ddof=1))


def update_ratios(params, lr):
    return [update_to_data_ratio(p, p.grad, lr) for p in params if p.ndim == 2]
