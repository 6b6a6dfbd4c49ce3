"""zero_init, learner style: counts and the mean log-likelihood as in makemore part 1; the lecture's
MLP with every parameter at zero, loss.backward()."""
import torch
import torch.nn.functional as F


def unigram_loss(Y, vocab_size=27):
    counts = torch.bincount(Y, minlength=vocab_size).double()
    p = counts / counts.sum()
    # the average negative log-likelihood of the targets under their own frequencies is the
    # entropy of those frequencies; a class that never occurs is never looked up
    loss = -p[Y].log().mean()
    return loss.item()


def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
    block_size = X.shape[1]
    with torch.enable_grad():
        C = torch.zeros((vocab_size, n_embd))
        W1 = torch.zeros((block_size * n_embd, n_hidden))
        b1 = torch.zeros(n_hidden)
        W2 = torch.zeros((n_hidden, vocab_size))
        b2 = torch.zeros(vocab_size)
        parameters = [C, W1, b1, W2, b2]
        for p in parameters:
            p.requires_grad = True

        emb = C[X]
        embcat = emb.view(emb.shape[0], -1)
        hpreact = embcat @ W1 + b1
        h = torch.tanh(hpreact)
        logits = h @ W2 + b2
        loss = F.cross_entropy(logits, Y.long())
        for p in parameters:
            p.grad = None
        loss.backward()
    return {"C": C.grad, "W1": W1.grad, "b1": b1.grad, "W2": W2.grad, "b2": b2.grad}
