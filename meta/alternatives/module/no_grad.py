"""no_grad, module style: the decorator form, log_softmax + nll_loss, a numpy float back."""
import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def _mean_nll(forward, X, Y):
    logits = forward(X)
    return F.nll_loss(F.log_softmax(logits, dim=1), Y)


def split_loss(forward, X, Y):
    loss = _mean_nll(forward, X, Y)
    return np.float64(loss.detach().cpu().double().numpy())
