"""Topic 5, batchnorm: the training-mode forward pass of batch normalization.

Lecture: "batch normalization". Normalise each pre-activation over the batch, then let a learned
gain and bias scale and shift it: hpreact = bngain * (hpreact - mean) / std + bnbias.
See kata/notes/batchnorm.md for the viewer questions on this topic.
"""
import torch


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Normalise each feature over the batch (dim 0), then scale by gamma and shift by beta.

    Formula: y = gamma * (x - mean) / sqrt(var + eps) + beta, with mean and var over dim 0 and
    var the BIASED variance (divide by N): var = ((x - mean) ** 2).mean(0)

    Shape: x: (N, C), gamma: (C,), beta: (C,) -> (N, C)

    Lecture value: each output feature has mean beta and (biased) std gamma; in the MLP it
    takes the loss log to train 2.0668, val 2.1048.

    Note: the lecture writes x.std(0), which is UNBIASED (divides by N - 1). The kata follows
    torch.nn.BatchNorm1d and the paper, which normalise with the biased variance; at N = 32 the
    two outputs differ by sqrt(32/31) = 1.016. eps goes inside the sqrt. Must be differentiable
    (autograd flows to x, gamma and beta), and must not call F.batch_norm or nn.BatchNorm1d.
    """
    # BEGIN SOLUTION
    mean = x.mean(0, keepdim=True)  # (1, C)
    xc = x - mean  # (N, C), centred once and used twice
    var = (xc * xc).mean(0, keepdim=True)  # (1, C), biased: divides by N
    return xc * (gamma / torch.sqrt(var + eps)) + beta  # (N, C); the scale is per feature, (C,)
    # END SOLUTION
