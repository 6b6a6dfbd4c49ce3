"""Topic 2, initial_loss: what the loss should be at init, and how to get there.

Lecture: "fixing the initial loss". With 27 characters and no knowledge yet, the network should
give each one probability 1/27, a loss of -log(1/27) = 3.2958. The naive init (all randn) starts
at 27.88 instead: the logits are large, so the softmax is confidently wrong.
See kata/notes/initial_loss.md for the viewer questions on this topic.
"""
import math


def expected_initial_loss(vocab_size):
    """The cross-entropy of a uniform prediction over `vocab_size` classes.

    Formula: -log(1 / vocab_size)  (= log(vocab_size), natural log)

    Shape: int -> float

    Lecture value: 3.295836866 for vocab_size 27 (the 26 letters plus '.'); the naive init
    starts at 27.88 on the first batch instead.

    Note: this is exactly F.cross_entropy of all-zero logits: every class gets 1/vocab_size.
    """
    # BEGIN SOLUTION
    return -math.log(1.0 / vocab_size)
    # END SOLUTION


def scale_output_layer(W, b, scale=0.01):
    """Shrink the output layer so the initial logits are near zero: (W * scale, b * 0).

    Formula: W' = W * scale, b' = b * 0

    Shape: W: (fan_in, vocab), b: (vocab,) -> (W': (fan_in, vocab), b': (vocab,)), new tensors

    Lecture value: with W2 * 0.01 and b2 * 0 the first-batch loss is 3.3221 instead of 27.88;
    W2 * 0.1 gives 4.2326 and W2 * 0 exactly 3.2958. The lecture keeps 0.01, not 0, so the
    weights still differ from one another (some symmetry breaking).

    Note: return new tensors; `W *= scale` would rewrite the caller's weights. The bias is
    zeroed, not scaled: a random bias alone would make some characters likelier at init.
    """
    # BEGIN SOLUTION
    return W * scale, b * 0
    # END SOLUTION
