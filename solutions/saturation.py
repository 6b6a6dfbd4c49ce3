"""Topic 3, saturation: how much of the tanh layer sits in its flat tails, and what that does
to the gradient.

Lecture: "fixing the saturated tanh". With the naive init the pre-activations have std 5.18 and
60.95% of |h| > 0.99 on the first batch; W1 * 0.2, b1 * 0.01 brings that to 0.98%.
See kata/notes/saturation.md for the viewer questions on this topic.
"""
import torch


def saturation_fraction(h, threshold=0.99):
    """Fraction of tanh outputs whose magnitude is strictly above `threshold`.

    Formula: mean over all elements of (|h| > threshold), strictly greater

    Shape: h: (N, C) -> float in [0, 1] (a fraction, not a percent)

    Lecture value: 0.6095 on the first batch with the naive init; 0.0098 after W1 * 0.2;
    0.0814 with Kaiming init. For h = tanh(s * z), z ~ N(0, 1), it is P(|z| > atanh(threshold) / s):
    s = 5.18 gives 0.609.
    """
    # BEGIN SOLUTION
    return (h.abs() > threshold).float().mean().item()
    # END SOLUTION


def dead_neurons(h, threshold=0.99):
    """Which neurons are saturated for every example: a "dead" neuron never passes a gradient.

    Formula: dead[c] = all over n of (|h[n, c]| > threshold), strictly greater

    Shape: h: (N, C) -> (C,) bool, one flag per neuron (column), reduced over the batch (dim 0)

    Lecture value: the all-white columns of the `h.abs() > 0.99` image; none at the naive init.
    """
    # BEGIN SOLUTION
    return (h.abs() > threshold).all(dim=0)  # (C,)
    # END SOLUTION


def tanh_backward(h, grad_out):
    """The gradient through tanh, given tanh's OUTPUT h (not its input).

    Formula: grad_in = (1 - h**2) * grad_out, because d tanh(x)/dx = 1 - tanh(x)**2

    Shape: h: (N, C), grad_out: (N, C) -> (N, C)

    Lecture value: the local gradient is 1 at h = 0 and goes to 0 as |h| -> 1: a saturated unit
    stops the gradient, whatever grad_out is.

    Note: h is already tanh(x). Applying tanh again (1 - tanh(h)**2) is the derivative at the
    wrong point, as if h were the pre-activation.
    """
    # BEGIN SOLUTION
    return (1 - h**2) * grad_out
    # END SOLUTION
