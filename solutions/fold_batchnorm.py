"""Topic 12, fold_batchnorm: the lecture's exercise E02. Fold an eval-mode BatchNorm into the
Linear layer before it, so inference needs one matmul and no normalisation.

In eval mode BatchNorm is a fixed per-feature affine map, and an affine map after a Linear layer
is another Linear layer.
See kata/notes/fold_batchnorm.md.
"""
import torch


def fold_batchnorm(W, b, running_mean, running_var, gamma, beta, eps=1e-5):
    """(W', b') with x @ W' + b' == batchnorm_eval(x @ W + b, running_mean, running_var, gamma, beta, eps).

    Formula: s = gamma / sqrt(running_var + eps)  (eps inside the sqrt, var not std);
             W' = W * s (each column j times s[j]);
             b' = (b - running_mean) * s + beta, with b = 0 when it is None

    Shape: W: (fan_in, fan_out); b (or None), running_mean, running_var, gamma, beta: (fan_out,)
           -> (W': (fan_in, fan_out), b': (fan_out,)), new tensors

    Lecture value: none printed (the lecture sets this as exercise E02); its deep net uses
    Linear(bias=False) before each BatchNorm1d, so b is None there, and after folding b'
    carries all the shift.

    Note: the scale multiplies COLUMNS of W (the lecture's x @ W layout); with torch's
    nn.Linear weight (fan_out, fan_in) it would multiply rows. Matches F.batch_norm with
    training=False.
    """
    # BEGIN SOLUTION
    scale = gamma / torch.sqrt(running_var + eps)  # (fan_out,)
    bias = torch.zeros_like(running_mean) if b is None else b
    return W * scale, (bias - running_mean) * scale + beta  # (fan_in, fan_out), (fan_out,)
    # END SOLUTION
