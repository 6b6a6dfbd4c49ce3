"""Topic 11, zero_init: the lecture's exercise E01. Start every weight and bias at zero; what still
trains, and why?

With C, W1, b1, W2 and b2 all zero, h = tanh(0) = 0, so W2's gradient h.T @ dlogits is zero, and
W2 = 0 sends no gradient back into h, so nothing before it moves either. Only b2 learns: the net
learns the best constant prediction, the unigram distribution of the next character, and its
loss falls to that distribution's entropy and no further.
See kata/notes/zero_init.md (why only b2 moves; how the lecture's `* 0.01` keeps symmetry
breaking; what a BatchNorm layer changes).
"""
import torch
import torch.nn.functional as F


def unigram_loss(Y, vocab_size=27):
    """The loss of the best constant prediction: the entropy of the targets' distribution, in nats.

    Formula: p_k = count_k / N for k in 0..vocab_size-1;  loss = -sum_k p_k * log(p_k),
             classes that never occur left out (0 * log 0 = 0)

    Shape: Y: (N,) integer class indices in 0..vocab_size-1 -> float

    Lecture value: 2.8226 on the lecture's training split (182,625 targets; val: 2.8204). It is
    the floor an all-zero net trains down to; the trained MLP reaches about 2.10.

    Note: this equals F.cross_entropy(logits, Y) for the constant logits log(p) on every row, the
    logits b2 learns. It is log(vocab_size) only when every class is equally frequent.
    """
    # BEGIN SOLUTION
    counts = torch.bincount(Y.reshape(-1), minlength=vocab_size).double()  # (vocab_size,)
    p = counts / counts.sum()
    p = p[p > 0]  # 0 * log 0 is 0, but torch computes nan for it
    return -(p * p.log()).sum().item()
    # END SOLUTION


def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
    """Every parameter's gradient after one forward and backward pass of the all-zero MLP.

    Formula: C, W1, b1, W2, b2 = zeros; emb = C[X]; h = tanh(emb.view(N, -1) @ W1 + b1);
             loss = F.cross_entropy(h @ W2 + b2, Y); loss.backward()
             -> only b2's gradient is non-zero: softmax(0) - onehot(Y) averaged over the batch,
             1 / vocab_size - count_k / N for class k

    Shape: X: (N, block_size) integer contexts, Y: (N,) -> {"C": (vocab_size, n_embd),
           "W1": (block_size * n_embd, n_hidden), "b1": (n_hidden,), "W2": (n_hidden, vocab_size),
           "b2": (vocab_size,)}, each a tensor in the default dtype

    Lecture value: with the lecture's sizes (vocab 27, n_embd 10, n_hidden 200, block 3) on a
    batch of 32: dW2 = h.T @ dlogits = 0 because h = tanh(0) = 0, dh = dlogits @ W2.T = 0 because
    W2 = 0, and so dW1, db1 and dC are 0 too. 30,000 steps of training move b2 only.

    Note: the lecture's init uses W2 * 0.01 and b2 * 0, not W2 * 0: a small non-zero W2 sends
    a gradient back into h, and random W1 and C give every hidden unit a different one (symmetry
    breaking). Compute the gradients even when the caller has turned autograd off.
    """
    # BEGIN SOLUTION
    N, block_size = X.shape
    with torch.enable_grad():
        params = {
            "C": torch.zeros(vocab_size, n_embd),
            "W1": torch.zeros(block_size * n_embd, n_hidden),
            "b1": torch.zeros(n_hidden),
            "W2": torch.zeros(n_hidden, vocab_size),
            "b2": torch.zeros(vocab_size),
        }
        for p in params.values():
            p.requires_grad_()
        emb = params["C"][X]  # (N, block_size, n_embd)
        h = torch.tanh(emb.view(N, -1) @ params["W1"] + params["b1"])  # (N, n_hidden)
        logits = h @ params["W2"] + params["b2"]  # (N, vocab_size)
        F.cross_entropy(logits, Y).backward()
    return {name: p.grad for name, p in params.items()}
    # END SOLUTION
