"""bias_redundancy, module style: itertools.pairwise over the tree's own nn.Module classes."""
from itertools import pairwise

from .modules import BatchNorm1d, Linear


def redundant_biases(layers):
    return [
        i
        for i, (layer, following) in enumerate(pairwise(layers))
        if isinstance(layer, Linear) and layer.bias is not None and isinstance(following, BatchNorm1d)
    ]


def drop_redundant_biases(layers):
    removed = 0
    for i in redundant_biases(layers):
        removed += int(layers[i].bias.numel())
        # nn.Module accepts None for a registered parameter: the bias is gone, as with bias=False
        layers[i].bias = None
    return removed
