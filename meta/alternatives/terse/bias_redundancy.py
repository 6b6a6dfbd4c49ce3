"""bias_redundancy, terse style: zip over neighbours."""
from .modules import BatchNorm1d, Linear


def redundant_biases(layers):
    return [i for i, (a, b) in enumerate(zip(layers, layers[1:]))
            if isinstance(a, Linear) and getattr(a, "bias", None) is not None and isinstance(b, BatchNorm1d)]


def drop_redundant_biases(layers):
    idx = redundant_biases(layers)
    n = sum(layers[i].bias.numel() for i in idx)
    for i in idx:
        layers[i].bias = None
    return n
