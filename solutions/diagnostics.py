"""Topic 9, diagnostics: the statistics behind the lecture's visualisations #1 to #3.

Lecture: after training the deep net, histograms of each tanh layer's outputs (viz #1), of the
gradients at those outputs (viz #2), and of the weights' gradients (viz #3), each summarised by a
mean, a std and, for activations, the fraction saturated.
See kata/notes/diagnostics.md for the viewer questions on this topic (which parameters the
`p.ndim == 2` filter leaves out; why the last layer's gradients are larger).
"""


def activation_stats(t, threshold=0.97):
    """Mean, std and saturated fraction of a layer's output, as the lecture prints them.

    Formula: mean = t.mean(), std = t.std() (unbiased, over ALL elements),
             saturated = mean of (|t| > threshold) (strict >), a fraction in [0, 1]

    Shape: t: any shape (the lecture's (N, C) tanh output) -> {"mean": float, "std": float,
           "saturated": float}, each a Python float

    Lecture value: tanh layer 2 of the deep net after 1,001 steps: mean -0.00, std 0.63,
    saturated 2.78% (0.0278 here).

    Note: the lecture prints saturation in percent; the kata returns a fraction. Its threshold
    here is 0.97, as in viz #1, not the 0.99 of the saturation topic. t.std() is unbiased
    (divides by n - 1), torch's default and the lecture's. No autograd graph: plain floats.
    """
    # BEGIN SOLUTION
    return {
        "mean": t.mean().item(),
        "std": t.std().item(),
        "saturated": (t.abs() > threshold).float().mean().item(),
    }
    # END SOLUTION


def grad_to_data_ratio(param, grad):
    """How big the gradient is compared with the values it will update.

    Formula: grad.std() / param.std()

    Shape: param and grad of the same shape, e.g. (fan_in, fan_out) -> float

    Lecture value: (30, 100) weight 4.88e-2; the last layer (100, 27) 1.16e-1, about twice
    the others (ten times and more without BatchNorm, where its weights were scaled by 0.1).

    Note: std, not mean or norm: the mean of a gradient is near 0 (signs cancel), and a shift
    of the data must not change how big the step is relative to the spread of the values.
    """
    # BEGIN SOLUTION
    return (grad.std() / param.std()).item()
    # END SOLUTION
