"""zero_init, terse style: one_hot frequencies and special.entr; torch.func.grad over a dict of zeros."""
import torch
import torch.nn.functional as F
from torch.func import grad


def unigram_loss(Y, vocab_size=27):
    freq = F.one_hot(Y.long().flatten(), max(vocab_size, int(Y.max()) + 1)).double().mean(0)
    return float(torch.special.entr(freq).sum())  # entr(0) = 0: absent classes drop out


def _loss(params, X, Y):
    h = params["C"][X].flatten(1).matmul(params["W1"]).add(params["b1"]).tanh()
    return F.cross_entropy(torch.addmm(params["b2"], h, params["W2"]), Y)


def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
    shapes = {"C": (vocab_size, n_embd), "W1": (X.shape[1] * n_embd, n_hidden), "b1": (n_hidden,),
              "W2": (n_hidden, vocab_size), "b2": (vocab_size,)}
    # a function transform: it differentiates even when the caller has autograd turned off
    return grad(_loss)({k: torch.zeros(s) for k, s in shapes.items()}, X.long(), Y.long())
