"""bias_redundancy, learner style."""
from .modules import BatchNorm1d, Linear


def redundant_biases(layers):
    result = []
    for i in range(len(layers) - 1):
        layer, nxt = layers[i], layers[i + 1]
        if isinstance(layer, Linear) and layer.bias is not None and isinstance(nxt, BatchNorm1d):
            result.append(i)
    return result


def drop_redundant_biases(layers):
    removed = 0
    for i in redundant_biases(layers):
        removed += layers[i].bias.numel()
        layers[i].bias = None
    return removed
