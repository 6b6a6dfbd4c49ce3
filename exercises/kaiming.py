# Exercise file: this one is yours. Replace each `raise NotImplementedError` with your code.
# Check it with `pytest -m kaiming` or `python grader.py kaiming`; stuck? `python grader.py --hint kaiming`.
"""Topic 4, kaiming: choose the init scale from the fan-in and the nonlinearity.

Lecture: "calculating the init scale". x (1000, 10) @ w (10, 200) has std sqrt(10) = 3.16 when w
is randn; dividing w by sqrt(fan_in) brings it back to 1. tanh squashes, so it needs a gain of
5/3 on top: std = gain / sqrt(fan_in).
See kata/notes/kaiming.md for the viewer questions on this topic.
"""
import math

import torch


def gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain gives it.

    Formula: linear 1, sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope**2))
    with slope = param (default 0.01), selu 3/4. Any other name raises ValueError.

    Shape: str -> float

    Lecture value: 5/3 for tanh (1.6667), the number the lecture multiplies W1 by.

    Note: torch returns the int 1 for linear and sigmoid and also accepts the conv names
    ('conv2d', ...); the kata always returns a Python float and raises ValueError for every name
    not listed above (names are case-sensitive: 'Tanh' is not 'tanh'). Do not call
    torch.nn.init: computing it is the exercise.
    """
    raise NotImplementedError("kaiming: gain is yours to write (hint: python grader.py --hint kaiming)")


def kaiming_std(fan_in, nonlinearity="tanh"):
    """The weight std that keeps activations at unit scale: gain / sqrt(fan_in).

    Formula: std = gain(nonlinearity) / sqrt(fan_in)

    Shape: int -> float

    Lecture value: (5/3) / sqrt(30) = 0.3043 for the MLP's W1 (fan_in = 3 * 10).

    Note: fan_in is the number of inputs each output sums over: the rows of W in x @ W. It
    assumes inputs of roughly unit variance (see kata/notes/kaiming.md, questions 6 and 9).
    """
    raise NotImplementedError("kaiming: kaiming_std is yours to write (hint: python grader.py --hint kaiming)")


def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    """A (fan_in, fan_out) weight drawn from N(0, kaiming_std(fan_in) ** 2).

    Formula: W = randn(fan_in, fan_out, generator=generator) * gain / sqrt(fan_in)

    Shape: -> (fan_in, fan_out), used as x @ W

    Lecture value: with W1 drawn this way the MLP's pre-activations have std 1.52 and 8.14% of
    |h| > 0.99; the loss log reaches train 2.0377, val 2.1070.

    Note: torch.nn.init.kaiming_normal_ takes the weight as (fan_out, fan_in) (nn.Linear's layout);
    the lecture's weights are (fan_in, fan_out). Draw one randn with the generator (as the lecture
    does) so the same seed gives the lecture's numbers; without a generator, torch's global one.
    A normal draw, not nn.Linear's uniform one (see kata/notes/kaiming.md, question 8).
    """
    raise NotImplementedError("kaiming: kaiming_normal is yours to write (hint: python grader.py --hint kaiming)")
