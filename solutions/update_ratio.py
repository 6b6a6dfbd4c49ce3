"""Topic 10, update_ratio: viz #4, how big each step's update is compared with the data.

Lecture: ((lr * p.grad).std() / p.data.std()).log10(), logged every step for each weight, plotted
against a guide line at -3: updates about 1/1000 of the values are a good learning rate.
See kata/notes/update_ratio.md for the viewer questions on this topic (why std and log10;
before or after the update; the paper on deep linear networks).
"""


def update_to_data_ratio(param, grad, lr):
    """log10 of the update's std over the parameter's std.

    Formula: log10( (lr * grad).std() / param.std() )   (base 10: -3 means 1/1000)

    Shape: param and grad of the same shape, lr a float -> float

    Lecture value: about -3 for a well-set learning rate; without BN at gain 5/3 and lr 0.1 it
    sits near -2.3 to -2.5 (last layer -1.5), at lr 0.001 near -5. Ten times the lr adds
    exactly 1.

    Note: use the `grad` argument, not param.grad. The lecture logs it right after the update
    (p.data already changed by about 1/1000); the difference is far below what the plot shows.
    """
    # BEGIN SOLUTION
    return ((lr * grad).std() / param.std()).log10().item()
    # END SOLUTION


def update_ratios(params, lr):
    """update_to_data_ratio(p, p.grad, lr) for each 2-D parameter (the weights), in order.

    Formula: [update_to_data_ratio(p, p.grad, lr) for p in params if p.ndim == 2]

    Shape: list of tensors with .grad set -> list of float, one per 2-D tensor, in order

    Lecture value: one row per step of the deep net's training, one value per weight: the
    embedding C (27, 10) and the Linear weights; the biases and BatchNorm gains and biases
    (1-D) are left out. Exactly 2-D: a 3-D tensor is not a weight matrix either.

    Note: reads p.grad and changes neither p nor p.grad (the step itself is the caller's).
    """
    # BEGIN SOLUTION
    return [update_to_data_ratio(p.data, p.grad, lr) for p in params if p.ndim == 2]
    # END SOLUTION
