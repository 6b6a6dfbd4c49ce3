"""saturation, terse style."""
import torch


def saturation_fraction(h, threshold=0.99):
    return float(h.abs().gt(threshold).sum()) / h.numel()


def dead_neurons(h, threshold=0.99):
    # every row saturated <=> the smallest magnitude in the column is above the threshold
    return h.abs().amin(dim=0).gt(threshold)


def tanh_backward(h, grad_out):
    dtype = torch.result_type(h, grad_out)
    hd = h.double()
    return torch.addcmul(grad_out.double(), grad_out.double() * hd, hd, value=-1.0).to(dtype)
