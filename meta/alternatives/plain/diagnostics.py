"""diagnostics, learner style."""
import torch


def activation_stats(t, threshold=0.97):
    with torch.no_grad():
        return {
            "mean": t.mean().item(),
            "std": t.std().item(),
            "saturated": (t.abs() > threshold).float().mean().item(),
        }


def grad_to_data_ratio(param, grad):
    with torch.no_grad():
        return (grad.std() / param.std()).item()
