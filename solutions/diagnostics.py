"""Topic 9, diagnostics: the statistics behind the lecture's visualisations #1 to #3.

Lecture: after training the deep net, histograms of each tanh layer's outputs (viz #1), of the
gradients at those outputs (viz #2), and of the weights' gradients (viz #3), each summarised by a
mean, a std and, for activations, the fraction saturated.
See kata/notes/diagnostics.md for the viewer questions on this topic.
"""


def activation_stats(t, threshold=0.97):
    """Mean, std and saturated fraction of a layer's output, as the lecture prints them.

    Formula: mean = t.mean(), std = t.std() (unbiased, over all elements),
             saturated = mean of (|t| > threshold), a fraction in [0, 1]

    Shape: t: any shape -> {"mean": float, "std": float, "saturated": float}

    Lecture value: tanh layer 2 of the deep net after 1,001 steps: mean -0.00, std 0.63,
    saturated 2.78% (0.0278 here; the lecture prints percent).
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

    Shape: param and grad of the same shape -> float

    Lecture value: (30, 100) weight 4.88e-2; the last layer (100, 27) 1.16e-1, about ten times
    the others.
    """
    # BEGIN SOLUTION
    return (grad.std() / param.std()).item()
    # END SOLUTION
