"""diagnostics, module style: statistics with numpy on a detached copy; numpy floats back."""
import numpy as np
import torch


def _np(t):
    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.double()
    return t.numpy()


def activation_stats(t, threshold=0.97):
    a = _np(t)
    saturated = _np(torch.abs(t.detach()) > threshold)  # compared in t's own dtype, strict >
    return {
        "mean": np.float64(a.mean(dtype=np.float64)),
        "std": np.float64(a.std(ddof=1, dtype=np.float64)),
        "saturated": np.float64(saturated.mean(dtype=np.float64)),
    }


def grad_to_data_ratio(param, grad):
    return np.float64(_np(grad).std(ddof=1, dtype=np.float64) / _np(param).std(ddof=1, dtype=np.float64))
