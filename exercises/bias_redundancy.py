# Exercise file: this one is yours. Replace each `raise NotImplementedError` with your code.
# Check it with `pytest -m bias_redundancy` or `python grader.py bias_redundancy`; stuck? `python grader.py --hint bias_redundancy`.
"""Topic 8, bias_redundancy: a bias right before a BatchNorm does nothing.

Lecture: BatchNorm subtracts the batch mean, and a bias adds the same constant to every row of a
feature, so the subtraction removes it: its gradient is exactly zero and it never learns. The
lecture builds every Linear that feeds a BatchNorm1d with bias=False; BatchNorm's beta plays the
bias's part.
See kata/notes/bias_redundancy.md for the viewer questions on this topic.
"""
from .modules import BatchNorm1d, Linear


def redundant_biases(layers):
    """Indices of the Linear layers that have a bias and are immediately followed by a BatchNorm1d.

    Formula: [i for i in range(len(layers) - 1) if layers[i] is a Linear with a bias and
              layers[i + 1] is a BatchNorm1d]

    Shape: list of modules -> list of int, in increasing order

    Lecture value: the deep net built with the default bias=True has 6 such layers, at indices
    0, 3, 6, 9, 12, 15; the lecture removes them all (bias=False).

    Note: only the very next layer counts. A bias before a Tanh, or one whose BatchNorm1d comes
    later behind another layer, changes the output and is not redundant.
    """
    raise NotImplementedError("bias_redundancy: redundant_biases is yours to write (hint: python grader.py --hint bias_redundancy)")


def drop_redundant_biases(layers):
    """Remove those biases in place (bias = None) and return how many scalars were removed.

    Formula: removed = sum of layers[i].bias.numel() for i in redundant_biases(layers)

    Shape: list of modules -> int

    Lecture value: the deep net with biases has 47,551 parameters; dropping the six redundant
    biases (5 * 100 + 27 = 527 scalars) gives the lecture's 47,024.

    Note: set the bias to None (as Linear(bias=False) has it), not to zeros: a zero tensor is
    still a parameter. A second call finds nothing and returns 0.
    """
    raise NotImplementedError("bias_redundancy: drop_redundant_biases is yours to write (hint: python grader.py --hint bias_redundancy)")
