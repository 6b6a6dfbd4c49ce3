"""update_ratio, learner style: the lecture's one-liner."""
import torch


def update_to_data_ratio(param, grad, lr):
    with torch.no_grad():
        return ((lr * grad).std() / param.std()).log10().item()


def update_ratios(params, lr):
    return [update_to_data_ratio(p, p.grad, lr) for p in params if p.ndim == 2]
