"""update_ratio, terse style: float64, torch.log10."""
import torch


def update_to_data_ratio(param, grad, lr):
    r = (lr * grad.detach().double()).std() / param.detach().double().std()
    return float(torch.log10(r))


def update_ratios(params, lr):
    return list(map(lambda p: update_to_data_ratio(p, p.grad, lr), filter(lambda p: p.ndim == 2, params)))
