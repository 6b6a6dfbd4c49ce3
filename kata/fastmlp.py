"""The one training path of part 1 and exercise E01: every stage of the lecture's MLP trains here,
with the backward pass written out by hand and checked against autograd in one place.

Why not autograd: the lecture's loop (kata/loop.py) spends most of its 0.3 ms a step in Python
and autograd bookkeeping on tiny tensors. Here
  - the stages without batch norm train as one model, batched over a leading stage dimension S
    (bmm), each stage with its own parameters and its own minibatches;
  - minibatch indices are drawn a chunk of steps at a time (a CPU generator gives the same
    numbers in one call as in many);
  - `StackedMLP.backward` is the MLP's backward pass by hand; `matches_autograd` checks it against
    autograd through the lecture's forward (mlp.forward) in float64;
  - the batch-norm stage calls the learner's batchnorm_forward every step and differentiates it
    in closed form (bn_backward) once `matches_autograd` has shown, on the first minibatch, that
    this equals autograd through the learner's function; otherwise by autograd through it;
  - tanh is 2 * sigmoid(2x) - 1, the same function: torch.tanh on this CPU build takes 68 us on
    a (4, 32, 200) tensor, sigmoid 12 us;
  - the batch-norm stage trains in a second process when there are two cores.
meta/test_lecture.py checks that this path takes the same steps as `mlp.reference_loop`.
"""
from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os

import torch
import torch.nn.functional as F

from kata import mlp
from kata.facts import BATCH, BN_EPS, BN_MOMENTUM, lr_at

CHUNK = 10_000  # steps of minibatch indices drawn at a time
VECTORS = ("b1", "b2", "gamma", "beta")  # stacked as (S, 1, n) so that they broadcast over the batch


def fast_tanh_(x):
    """tanh(x) in place, as 2 * sigmoid(2x) - 1: the same function, only the rounding differs
    (~1e-7). torch.tanh is ~5x slower than torch.sigmoid on this CPU build."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def bn_backward(xhat, invstd, gamma, dy):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) * invstd, batch statistics with the
    biased variance (what batchnorm_forward computes): returns (dx, dgamma, dbeta).
    dx = gamma * invstd * (dy - (sum(dy) + xhat * sum(dy * xhat)) / N), sums over the batch."""
    n = dy.shape[0]
    dbeta = dy.sum(0)  # (C,)
    dgamma = (dy * xhat).sum(0)  # (C,)
    dx = torch.sub(dy, torch.addcmul(dbeta, xhat, dgamma), alpha=1 / n).mul_(gamma * invstd)  # (N, C)
    return dx, dgamma, dbeta


def autograd_bn(code, x, gamma, beta, dy):
    """The batch-norm layer's gradients by autograd through the learner's batchnorm_forward."""
    with torch.enable_grad():
        x, g, b = (t.detach().requires_grad_() for t in (x, gamma, beta))
        code.batchnorm_forward(x, g, b).backward(dy)
    return x.grad, g.grad, b.grad


# ---------------------------------------------------------------------------------------------
# the first layer, x @ W1 and then b1 or batch norm: the only part in which the stages differ


def linear_backward(emb, W1T, dxw):
    """Gradients through xw = emb @ W1, S stages, W1T = W1.transpose(1, 2):
    (d emb (S, B, 30), d W1 (S, 30, 200))."""
    return torch.bmm(dxw, W1T), torch.bmm(emb.transpose(1, 2), dxw)


class BiasLayer:
    """hpre = emb @ W1 + b1, for S stages at once: W1 (S, 30, 200), b1 (S, 1, 200)."""

    def __init__(self, W1, b1):
        self.params = {"W1": W1, "b1": b1}
        self.W1T = W1.transpose(1, 2)  # a view: it follows W1's in-place updates
        self.emb = None

    def forward(self, emb):  # (S, B, 30) -> (S, B, 200)
        self.emb = emb
        return torch.baddbmm(self.params["b1"], emb, self.params["W1"])

    def backward(self, dhpre):
        """-> (d loss / d emb, {"W1": ..., "b1": ...})."""
        demb, dW1 = linear_backward(self.emb, self.W1T, dhpre)
        return demb, {"W1": dW1, "b1": dhpre.sum(1, keepdim=True)}


class BatchNormLayer:
    """hpre = the learner's batchnorm_forward(emb @ W1, gamma, beta), for one stage (S = 1): the
    learner's function is written for one (N, C) batch. The running mean and (unbiased) var
    follow the learner's ema_update, one call for both (ema_update is elementwise)."""

    def __init__(self, code, W1, gamma, beta, running, closed_form: bool):
        self.code, self.closed_form = code, closed_form
        self.params = {"W1": W1, "gamma": gamma, "beta": beta}  # (1, 30, 200), (1, 1, 200), (1, 1, 200)
        self.running = running  # (2, 200): mean, var
        self.W1T = W1.transpose(1, 2)  # a view: it follows W1's in-place updates
        self.emb = self.saved = None

    def forward(self, emb):  # (1, B, 30) -> (1, B, 200)
        self.emb = emb
        x = torch.mm(emb[0], self.params["W1"][0])  # (B, 200)
        n = x.shape[0]
        mean = x.mean(0)  # (200,)
        xc = x - mean  # (B, 200)
        sq = xc.square().sum(0)  # (200,), sum of squared deviations
        gamma, beta = self.params["gamma"][0, 0], self.params["beta"][0, 0]
        y = self.code.batchnorm_forward(x, gamma, beta)  # the learner's, (B, 200)
        self.running = self.code.ema_update(self.running, torch.stack((mean, sq / (n - 1))), BN_MOMENTUM)
        if self.closed_form:
            invstd = (sq / n + BN_EPS).rsqrt_()  # (200,), biased variance, as batchnorm_forward
            self.saved = (xc * invstd, invstd)
        else:
            self.saved = x.clone()  # tanh runs in place on y, which the learner's code may have aliased to x
        return y.unsqueeze(0)

    def backward(self, dhpre):
        """-> (d loss / d emb, {"W1": ..., "gamma": ..., "beta": ...})."""
        gamma, dy = self.params["gamma"][0, 0], dhpre[0]
        if self.closed_form:
            dx, dgamma, dbeta = bn_backward(*self.saved, gamma, dy)
        else:
            dx, dgamma, dbeta = autograd_bn(self.code, self.saved, gamma, self.params["beta"][0, 0], dy)
        demb, dW1 = linear_backward(self.emb, self.W1T, dx.unsqueeze(0))
        return demb, {"W1": dW1, "gamma": dgamma.view(1, 1, -1), "beta": dbeta.view(1, 1, -1)}


# ---------------------------------------------------------------------------------------------
# the MLP, S stages stacked, forward and backward by hand


class StackedMLP:
    """S stages' MLPs as one: stage s owns rows s*V .. s*V+V-1 of C, and W1[s], W2[s], b2[s] and
    its first layer's other parameters [s]. Inputs are rows of the stacked C (X + offset)."""

    def __init__(self, stages: list, code, closed_form: bool = True):
        S = len(stages)
        V, n_embd = stages[0].params["C"].shape
        stack = lambda k: torch.stack([s.params[k] for s in stages])  # noqa: E731
        self.S, self.V, self.n_embd = S, V, n_embd
        self.C = stack("C").view(S * V, n_embd)
        self.W2, self.b2 = stack("W2"), stack("b2").unsqueeze(1)  # (S, 200, V), (S, 1, V)
        self.W2T = self.W2.transpose(1, 2)  # a view: it follows W2's in-place updates
        if stages[0].config.batchnorm:
            assert S == 1, "a batch-norm stage trains alone"
            self.layer = BatchNormLayer(code, stack("W1"), stack("gamma").unsqueeze(1), stack("beta").unsqueeze(1),
                                        stages[0].running.clone(), closed_form)
        else:
            self.layer = BiasLayer(stack("W1"), stack("b1").unsqueeze(1))  # (S, 30, 200), (S, 1, 200)
        self.params = {"C": self.C, **self.layer.params, "W2": self.W2, "b2": self.b2}
        self.offset = torch.arange(S) * V  # (S,): stage s's first row of C
        self.one = torch.ones((), dtype=self.C.dtype)  # for 1 - h*h as one addcmul
        self.minus_one = torch.full((1, 1, 1), -1.0, dtype=self.C.dtype)  # expanded to (S, B, 1)

    def forward(self, X, Y, out=None) -> tuple:
        """X (S, B, block_size) rows of the stacked C, Y (S, B) -> (log-probabilities of the
        targets summed over the batch (S,), cache); the mean cross-entropy is -that / B. out: an
        (S,) tensor to write the sums into."""
        S, B = Y.shape
        rows = X.reshape(-1)  # (S * B * block_size,)
        emb = self.C.index_select(0, rows).view(S, B, -1)  # (S, B, 30); index_select: 2x faster than C[X]
        h = fast_tanh_(self.layer.forward(emb))  # (S, B, 200)
        logp = torch.log_softmax(torch.baddbmm(self.b2, h, self.W2), -1)  # (S, B, V)
        target_logp = torch.sum(logp.gather(2, Y.unsqueeze(2)), (1, 2), out=out)  # (S,)
        return target_logp, (rows, h, logp, Y)

    def backward(self, cache) -> dict:
        """Every parameter's gradient of the mean cross-entropy, by hand (the forward's cache is
        overwritten)."""
        rows, h, logp, Y = cache
        S, B = Y.shape
        # d loss / d logits = (softmax - onehot(Y)) / B
        dlogits = logp.exp_().scatter_add_(2, Y.unsqueeze(2), self.minus_one.expand(S, B, 1)).div_(B)  # (S, B, V)
        dh = torch.bmm(dlogits, self.W2T)  # (S, B, 200)
        dhpre = dh.mul_(torch.addcmul(self.one, h, h, value=-1))  # tanh'(x) = 1 - tanh(x)**2
        demb, layer_grads = self.layer.backward(dhpre)  # (S, B, 30)
        # index_put_ with accumulate: rows that occur several times add up (2x faster than index_add_)
        dC = torch.zeros_like(self.C).index_put_((rows,), demb.view(-1, self.n_embd), accumulate=True)
        return {"C": dC, **layer_grads, "W2": torch.bmm(h.transpose(1, 2), dlogits), "b2": dlogits.sum(1, keepdim=True)}

    @property
    def layer_needs_autograd(self) -> bool:
        return isinstance(self.layer, BatchNormLayer) and not self.layer.closed_form

    def sgd(self, grads: dict, lr: float):
        for k, g in grads.items():
            self.params[k].sub_(g, alpha=lr)

    def per_stage(self, tensors: dict) -> list[dict]:
        """Stacked parameters (or gradients) split back into each stage's own shapes."""
        out = [{} for _ in range(self.S)]
        for k, t in tensors.items():
            t = t.view(self.S, self.V, self.n_embd) if k == "C" else t[:, 0] if k in VECTORS else t
            for s in range(self.S):
                out[s][k] = t[s]
        return out

    def write_back(self, stages: list):
        for stage, params in zip(stages, self.per_stage(self.params)):
            stage.params = {k: params[k].clone() for k in stage.params}
        if isinstance(self.layer, BatchNormLayer):
            stages[0].running = self.layer.running.clone()


def matches_autograd(stage, code, X, Y) -> bool:
    """Does StackedMLP's hand-written backward give, for one step of `stage` on X (B, block_size),
    Y (B,), every gradient that autograd gives through mlp.forward (the lecture's forward pass;
    in the batch-norm stage, through the learner's batchnorm_forward)? Checked in float64; False
    where they differ or where the learner's code cannot run in float64."""
    p64 = {k: v.detach().double() for k, v in stage.params.items()}
    running = None if stage.running is None else stage.running.double()
    twin = dataclasses.replace(stage, params=p64, running=running)
    theirs = {k: v.clone().requires_grad_() for k, v in p64.items()}
    try:
        with torch.no_grad():
            net = StackedMLP([twin], code, closed_form=True)
            _, cache = net.forward(X.unsqueeze(0), Y.unsqueeze(0))  # S = 1: rows of C are X itself
            mine = net.per_stage(net.backward(cache))[0]
        with torch.enable_grad():  # the training loop runs under no_grad
            F.cross_entropy(mlp.forward(theirs, code, X)[2], Y).backward()
    except Exception:  # noqa: BLE001 - whatever the learner's code raises, autograd on float32 decides
        return False
    # float64: the two agree to ~1e-12 of the gradient; a wrong formula is off by far more than 1e-6
    return all(t.grad is not None and torch.allclose(mine[k], t.grad, rtol=1e-6, atol=1e-9)
               for k, t in theirs.items())


# ---------------------------------------------------------------------------------------------
# training


def _index_chunks(gens, n, steps):
    """(S, chunk, BATCH) minibatch indices, each stage's row from its own generator, in the same
    order the lecture's per-step torch.randint(0, n, (32,), generator=g) would give them."""
    for start in range(0, steps, CHUNK):
        size = min(CHUNK, steps - start)
        yield start, torch.stack([torch.randint(0, n, (size, BATCH), generator=g) for g in gens])


def _report_every(steps: int) -> int:
    """Report progress every 1000 steps, or ten times in a short run."""
    return max(1, min(1000, steps // 10))


def _build(stages, code, X0, Y0) -> StackedMLP:
    """The stacked model; a batch-norm stage's BN layer is differentiated in closed form only if
    matches_autograd says so on its first minibatch X0 (1, B, block_size), Y0 (1, B)."""
    closed_form = True
    if stages[0].config.batchnorm:
        closed_form = matches_autograd(stages[0], code, X0[0], Y0[0])
        stages[0].bn_backward = "closed form, equal to autograd on step 1" if closed_form else "autograd"
    return StackedMLP(stages, code, closed_form)


def train(stages: list, code, Xtr, Ytr, steps: int, progress=None) -> torch.Tensor:
    """Train `stages` (all without batch norm, or one with it) as one model for `steps`, lr as the
    lecture (facts.lr_at). Each stage is left trained, its minibatch losses in stage.losses;
    returns them stacked, (S, steps). progress(n_steps, running_loss), if given, is called every
    1000 steps (ten times in a short run)."""
    net = None
    target_logp = torch.empty(steps, len(stages))  # row i: step i's summed log-probabilities
    every = _report_every(steps)
    for start, ix in _index_chunks([s.gen for s in stages], Xtr.shape[0], steps):
        if net is None:
            net = _build(stages, code, Xtr[ix[:, 0]], Ytr[ix[:, 0]])
        # inference mode also skips autograd's version counters and view tracking (~6% a step);
        # a batch-norm layer differentiated by autograd needs autograd, and gets no_grad
        with torch.no_grad() if net.layer_needs_autograd else torch.inference_mode():
            ix = ix.transpose(0, 1).contiguous()  # (chunk, S, B): each step's indices contiguous
            Xc = Xtr[ix] + net.offset.view(-1, 1, 1)  # (chunk, S, B, block_size): rows of the stacked C
            Yc = Ytr[ix]  # (chunk, S, B)
            for t in range(ix.shape[0]):
                i = start + t
                _, cache = net.forward(Xc[t], Yc[t], out=target_logp[i])
                net.sgd(net.backward(cache), lr_at(i, steps))
                if progress is not None and (i + 1) % every == 0:
                    progress(every, -target_logp[i + 1 - every:i + 1].mean().item() / BATCH)
    net.write_back(stages)
    losses = (target_logp.T / -BATCH).contiguous()  # (S, steps), mean cross-entropy
    for stage, row in zip(stages, losses):
        stage.losses = row
    return losses


def groups(stages: list) -> list[list]:
    """The stages without batch norm train together, as one batched model; a batch-norm stage
    trains alone."""
    plain = [s for s in stages if not s.config.batchnorm]
    return ([plain] if plain else []) + [[s] for s in stages if s.config.batchnorm]


def use_parallel(steps: int, n_groups: int = 2) -> bool:
    """A second process pays off from about 20,000 steps (a fork and a pipe cost well under 1 s)."""
    return (n_groups > 1 and (os.cpu_count() or 1) >= 2 and steps >= 20_000
            and "fork" in multiprocessing.get_all_start_methods())


def _worker(group, code, Xtr, Ytr, steps, conn):
    torch.set_num_threads(1)
    train(group, code, Xtr, Ytr, steps)
    # plain bytes: torch's own pickling of tensors shares file descriptors, which breaks when
    # this process exits before the parent has read them
    buffer = io.BytesIO()
    torch.save([(s.params, s.running, s.losses, s.bn_backward) for s in group], buffer)
    conn.send_bytes(buffer.getvalue())
    conn.close()


def train_all(stages: list, code, Xtr, Ytr, steps: int, progress=None, parallel=None):
    """Train every stage, group by group (see `groups`): the first group in this process with
    `progress`, the others in forked processes when `parallel` (default: use_parallel)."""
    todo = groups(stages)
    if parallel is None:
        parallel = use_parallel(steps, len(todo))
    workers = []
    if parallel and len(todo) > 1:
        ctx = multiprocessing.get_context("fork")
        for group in todo[1:]:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(group, code, Xtr, Ytr, steps, send))
            proc.start()
            send.close()
            workers.append((group, proc, recv))
        todo = todo[:1]
    threads = torch.get_num_threads()
    if workers:
        torch.set_num_threads(1)
    try:
        for group in todo:
            train(group, code, Xtr, Ytr, steps, progress)
        for group, proc, recv in workers:
            states = torch.load(io.BytesIO(recv.recv_bytes()))
            proc.join()
            for stage, (params, running, losses, how) in zip(group, states):
                stage.params, stage.running, stage.losses, stage.bn_backward = params, running, losses, how
    finally:
        for _, proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
        torch.set_num_threads(threads)
