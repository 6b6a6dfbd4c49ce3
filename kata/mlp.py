"""Part 1 of `python -m kata lecture`: the lecture's MLP in its five stages, with the learner's code.

Every stage starts from a fresh `torch.Generator().manual_seed(2147483647)` and draws its parameters
in the lecture's order (C, W1, b1, W2, b2), then its minibatch indices from the same generator.
The learner's code decides the init (`scale_output_layer`, `kaiming_normal`) and, in the batch-norm
stage, the normalisation itself (`batchnorm_forward`, differentiated by autograd) and the running
statistics (`ema_update`, `batchnorm_eval`, `calibrate`).

Speed. The lecture's loop spends most of its 0.3 ms a step in Python and autograd bookkeeping on
tiny tensors. Here:
  - the four stages without batch norm train together as one batched model (bmm over a leading
    stage dimension), with the MLP's backward pass written out by hand;
  - each stage's minibatch indices are drawn up front, a chunk of steps at a time (a CPU
    generator gives the same numbers in one call as in many);
  - the batch-norm stage runs the learner's `batchnorm_forward` every step and differentiates it
    in closed form, after checking on the first step that the closed form equals autograd through
    the learner's function (if not, autograd is used for the whole run);
  - tanh in the training loops is 2 * sigmoid(2x) - 1, the same function: torch.tanh on this CPU
    build takes 68 us on a (4, 32, 200) tensor, sigmoid 12 us;
  - the two groups run in two processes when there are two cores.
`reference_loop` is the plain lecture-style loop, kept for the tests and the speed benchmark.
"""
from __future__ import annotations

import io
import multiprocessing
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

SEED = 2147483647
N_EMBD, N_HIDDEN, BATCH = 10, 200, 32
STAGES = ("original", "softmax", "tanh", "kaiming", "batchnorm")
LECTURE = {  # printed by the lecture's notebook after 200,000 steps: (train, val)
    "original": (2.1245, 2.1682),
    "softmax": (2.07, 2.13),
    "tanh": (2.0356, 2.1027),
    "kaiming": (2.0377, 2.1070),
    "batchnorm": (2.0668, 2.1048),
}
TITLES = {
    "original": "original",
    "softmax": "fix softmax confidently wrong",
    "tanh": "fix tanh layer too saturated at init",
    "kaiming": 'use semi-principled "kaiming init" instead',
    "batchnorm": "add batch norm layer",
}
BN_EPS = 1e-5  # batchnorm_forward's default (CONTRACT.md)
BN_MOMENTUM = 0.001  # the lecture's inline BN: running = 0.999 * running + 0.001 * batch
ONE = torch.ones(())  # for 1 - h*h as one addcmul
CHUNK = 10_000  # steps of minibatch indices drawn at a time


@dataclass
class Stage:
    """One stage's parameters, right after init, and the generator its minibatches come from."""
    name: str
    params: dict  # C (27, 10), W1 (30, 200), b1 (200,) [not in the BN stage], W2 (200, 27), b2 (27,)
    gen: torch.Generator
    bn: dict = field(default_factory=dict)  # BN stage: gamma, beta, running_mean, running_var
    bn_backward: str = ""  # BN stage, after training: how the BN layer was differentiated


def lr_at(step: int, steps: int) -> float:
    """0.1, then 0.01 for the second half (the lecture: from step 100,000 of 200,000)."""
    return 0.1 if step < steps // 2 else 0.01


def init_stage(name: str, code, vocab_size: int, block_size: int) -> Stage:
    """The lecture's init for one stage, drawn from a fresh generator with the lecture's seed."""
    g = torch.Generator().manual_seed(SEED)
    fan_in = N_EMBD * block_size
    p = {"C": torch.randn((vocab_size, N_EMBD), generator=g)}
    if name in ("kaiming", "batchnorm"):
        p["W1"] = code.kaiming_normal(fan_in, N_HIDDEN, "tanh", generator=g)
    else:
        p["W1"] = torch.randn((fan_in, N_HIDDEN), generator=g)
    if name != "batchnorm":  # the BN stage has no b1: BN's mean subtraction would cancel it
        p["b1"] = torch.randn(N_HIDDEN, generator=g)
    W2, b2 = torch.randn((N_HIDDEN, vocab_size), generator=g), torch.randn(vocab_size, generator=g)
    if name != "original":
        W2, b2 = code.scale_output_layer(W2, b2)
    p["W2"], p["b2"] = W2, b2
    if name == "tanh":
        p["W1"], p["b1"] = p["W1"] * 0.2, p["b1"] * 0.01
    if name == "kaiming":
        p["b1"] = p["b1"] * 0.01
    p = {k: v.detach().float().contiguous() for k, v in p.items()}
    bn = {}
    if name == "batchnorm":
        bn = {"gamma": torch.ones(N_HIDDEN), "beta": torch.zeros(N_HIDDEN),
              "running_mean": torch.zeros(N_HIDDEN), "running_var": torch.ones(N_HIDDEN)}
    return Stage(name, p, g, bn)


# ---------------------------------------------------------------------------------------------
# forward passes shared by the first-batch report and the evaluation


def hidden(stage: Stage, code, X, running=None):
    """tanh layer output for inputs X (N, block_size). BN stage: batch statistics when running
    is None, else `running` = (mean, var) through the learner's batchnorm_eval."""
    p = stage.params
    emb = p["C"][X]  # (N, block_size, n_embd)
    hpre = emb.view(emb.shape[0], -1) @ p["W1"]  # (N, n_hidden)
    if "b1" in p:
        hpre = hpre + p["b1"]
    elif running is None:
        hpre = code.batchnorm_forward(hpre, stage.bn["gamma"], stage.bn["beta"])
    else:
        hpre = code.batchnorm_eval(hpre, *running, stage.bn["gamma"], stage.bn["beta"])
    return torch.tanh(hpre)


def logits_fn(stage: Stage, code, running=None):
    p = stage.params
    return lambda X: hidden(stage, code, X, running) @ p["W2"] + p["b2"]  # (N, vocab)


def first_batch(stage: Stage, code, Xtr, Ytr) -> dict:
    """Loss and saturation (|h| > 0.99) on the stage's first minibatch, before any update; the
    generator is left untouched (a clone draws the batch)."""
    g = torch.Generator()
    g.set_state(stage.gen.get_state())
    ix = torch.randint(0, Xtr.shape[0], (BATCH,), generator=g)
    with torch.no_grad():
        h = hidden(stage, code, Xtr[ix])
        loss = F.cross_entropy(h @ stage.params["W2"] + stage.params["b2"], Ytr[ix]).item()
    return {"init_loss": loss, "init_saturation": float(code.saturation_fraction(h))}


# ---------------------------------------------------------------------------------------------
# training


def _index_chunks(gens, n, steps):
    """(S, chunk, BATCH) minibatch indices, each stage's row from its own generator, in the same
    order the lecture's per-step torch.randint(0, n, (32,), generator=g) would give them."""
    for start in range(0, steps, CHUNK):
        size = min(CHUNK, steps - start)
        yield start, torch.stack([torch.randint(0, n, (size, BATCH), generator=g) for g in gens])


def fast_tanh(x):
    """tanh(x) = 2 * sigmoid(2x) - 1, exactly; only the rounding differs (~1e-7). Used in the hot
    loops because torch.tanh is ~5x slower than torch.sigmoid on this CPU build."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def _report_every(steps: int) -> int:
    """Report progress every 1000 steps, or ten times in a short run."""
    return max(1, min(1000, steps // 10))


def train_plain(stages: list[Stage], Xtr, Ytr, steps: int, progress=None) -> torch.Tensor:
    """Train the stages without batch norm together; returns the per-step losses (S, steps).

    One batched MLP: stage s uses C[s], W1[s], ... and its own minibatches. The backward pass is
    the MLP's, by hand (no learner code runs inside the loop; the learner's part is the init)."""
    S, V = len(stages), stages[0].params["C"].shape[0]
    stack = lambda k: torch.stack([s.params[k] for s in stages])  # noqa: E731
    C = stack("C").view(S * V, N_EMBD)  # stage s's table is rows s*V .. s*V+V-1
    W1, W2 = stack("W1"), stack("W2")  # (S, 30, 200), (S, 200, 27)
    b1, b2 = stack("b1").unsqueeze(1), stack("b2").unsqueeze(1)  # (S, 1, 200), (S, 1, 27)
    offset = (torch.arange(S) * V).view(S, 1, 1, 1)
    losses = torch.empty(S, steps)
    minus_one = torch.full((S, BATCH, 1), -1.0)
    every = _report_every(steps)
    with torch.no_grad():
        for start, ix in _index_chunks([s.gen for s in stages], Xtr.shape[0], steps):
            Xc = Xtr[ix] + offset  # (S, chunk, 32, block_size): rows of the stacked C
            Yc = Ytr[ix]  # (S, chunk, 32)
            for t in range(ix.shape[1]):
                lr = lr_at(start + t, steps)
                Xb, Yb = Xc[:, t], Yc[:, t]  # (S, 32, block_size), (S, 32)
                rows = Xb.reshape(-1)  # (S * 32 * block_size,)
                emb = C.index_select(0, rows).view(S, BATCH, -1)  # (S, 32, 30); index_select: 2x C[Xb]
                h = fast_tanh(torch.baddbmm(b1, emb, W1))  # (S, 32, 200)
                logp = torch.log_softmax(torch.baddbmm(b2, h, W2), -1)  # (S, 32, 27)
                dlogits = logp.exp()
                dlogits.scatter_add_(2, Yb.unsqueeze(2), minus_one)
                dlogits /= BATCH  # d(mean cross-entropy)/d logits = (softmax - onehot) / N
                losses[:, start + t] = -logp.gather(2, Yb.unsqueeze(2)).mean((1, 2))
                dh = torch.bmm(dlogits, W2.transpose(1, 2))  # (S, 32, 200)
                dhpre = dh.mul_(torch.addcmul(ONE, h, h, value=-1))  # tanh'(x) = 1 - tanh(x)**2
                demb = torch.bmm(dhpre, W1.transpose(1, 2))  # (S, 32, 30)
                W2.baddbmm_(h.transpose(1, 2), dlogits, alpha=-lr)
                b2.sub_(dlogits.sum(1, keepdim=True), alpha=lr)
                W1.baddbmm_(emb.transpose(1, 2), dhpre, alpha=-lr)
                b1.sub_(dhpre.sum(1, keepdim=True), alpha=lr)
                # index_put_ with accumulate: 2x faster than index_add_ here; repeated rows add up
                C.index_put_((rows,), demb.reshape(-1, N_EMBD).mul_(-lr), accumulate=True)
                if progress is not None and (start + t + 1) % every == 0:
                    progress(every, losses[:, start + t + 1 - every:start + t + 1].mean().item())
    for s, stage in enumerate(stages):
        stage.params.update(C=C.view(S, V, N_EMBD)[s], W1=W1[s], b1=b1[s, 0], W2=W2[s], b2=b2[s, 0])
    return losses


def bn_backward(xhat, invstd, gamma, dy):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) * invstd, batch statistics with the
    biased variance (what batchnorm_forward computes): returns (dx, dgamma, dbeta).
    dx = gamma * invstd / N * (N * dy - sum(dy) - xhat * sum(dy * xhat)), sums over the batch."""
    n = dy.shape[0]
    dbeta = dy.sum(0)  # (C,)
    dgamma = (dy * xhat).sum(0)  # (C,)
    dx = (gamma * invstd / n) * (n * dy - dbeta - xhat * dgamma)  # (N, C)
    return dx, dgamma, dbeta


def closed_form_matches_autograd(code, hpre, gamma, beta, dy, eps=BN_EPS) -> bool:
    """Does bn_backward give what autograd through the learner's batchnorm_forward gives? Checked in
    float64; code that cannot run in float64 gets autograd in the run itself (False)."""
    x, g, b = (t.detach().double().requires_grad_() for t in (hpre, gamma, beta))
    try:
        with torch.enable_grad():  # the training loop runs under no_grad
            code.batchnorm_forward(x, g, b).backward(dy.double())
    except Exception:  # noqa: BLE001 - whatever the learner's code raises, autograd on float32 decides
        return False
    xc = x.detach() - x.detach().mean(0)  # (N, C)
    invstd = (xc.square().mean(0) + eps).rsqrt()  # (C,), biased variance as batchnorm_forward
    mine = bn_backward(xc * invstd, invstd, g.detach(), dy.double())
    theirs = (x.grad, g.grad, b.grad)
    return all(t is not None and torch.allclose(m, t, rtol=1e-6, atol=1e-9) for m, t in zip(mine, theirs))


def train_batchnorm(stage: Stage, code, Xtr, Ytr, steps: int, progress=None) -> torch.Tensor:
    """Train the batch-norm stage; returns its per-step losses (1, steps).

    Every step's normalised pre-activations come from the learner's batchnorm_forward. Its
    gradient is bn_backward's closed form, once the first step has shown that it equals autograd
    through the learner's function; otherwise autograd runs every step. The rest of the MLP's
    backward is written out. The running mean and var follow the learner's ema_update (momentum
    0.001, as the lecture)."""
    p, bn = stage.params, stage.bn
    C, W1, W2, b2 = p["C"], p["W1"], p["W2"], p["b2"]
    gamma, beta = bn["gamma"], bn["beta"]
    running = torch.stack((bn["running_mean"], bn["running_var"]))  # (2, 200)
    minus_one = torch.full((BATCH, 1), -1.0)
    losses = torch.empty(1, steps)
    every = _report_every(steps)
    closed_form = None  # decided on the first step
    with torch.no_grad():
        for start, ix in _index_chunks([stage.gen], Xtr.shape[0], steps):
            Xc, Yc = Xtr[ix[0]], Ytr[ix[0]]  # (chunk, 32, block_size), (chunk, 32)
            for t in range(ix.shape[1]):
                lr = lr_at(start + t, steps)
                Xb, Yb = Xc[t], Yc[t]
                rows = Xb.reshape(-1)  # (32 * block_size,)
                emb = C.index_select(0, rows).view(BATCH, -1)  # (32, 30)
                hpre = emb @ W1  # (32, 200)
                mean = hpre.mean(0)  # (200,)
                xc = hpre - mean  # (32, 200)
                sq = xc.square().sum(0)  # (200,), sum of squared deviations
                y = code.batchnorm_forward(hpre, gamma, beta)  # the learner's, (32, 200)
                h = fast_tanh(y)
                logp = torch.log_softmax(torch.addmm(b2, h, W2), -1)  # (32, 27)
                losses[0, start + t] = -logp.gather(1, Yb.unsqueeze(1)).mean()
                dlogits = logp.exp_().scatter_add_(1, Yb.unsqueeze(1), minus_one)
                dlogits /= BATCH  # (softmax - onehot) / N
                dy = (dlogits @ W2.T).mul_(torch.addcmul(ONE, h, h, value=-1))  # (32, 200), tanh'
                if closed_form is None:
                    closed_form = closed_form_matches_autograd(code, hpre, gamma, beta, dy)
                if closed_form:
                    invstd = (sq / BATCH + BN_EPS).rsqrt_()  # (200,), biased, as batchnorm_forward
                    dhpre, dgamma, dbeta = bn_backward(xc * invstd, invstd, gamma, dy)
                else:
                    dhpre, dgamma, dbeta = _autograd_bn(code, hpre, gamma, beta, dy)
                # the learner's EMA, one call for both statistics (ema_update is elementwise)
                stats = torch.stack((mean, sq / (BATCH - 1)))  # (2, 200), unbiased var
                running = code.ema_update(running, stats, BN_MOMENTUM)
                demb = dhpre @ W1.T  # (32, 30)
                W1.addmm_(emb.T, dhpre, alpha=-lr)
                W2.addmm_(h.T, dlogits, alpha=-lr)
                b2.sub_(dlogits.sum(0), alpha=lr)
                gamma.sub_(dgamma, alpha=lr)
                beta.sub_(dbeta, alpha=lr)
                C.index_put_((rows,), demb.view(-1, N_EMBD).mul_(-lr), accumulate=True)
                if progress is not None and (start + t + 1) % every == 0:
                    progress(every, losses[0, start + t + 1 - every:start + t + 1].mean().item())
    bn["gamma"], bn["beta"] = gamma, beta
    bn["running_mean"], bn["running_var"] = running[0].clone(), running[1].clone()
    stage.bn_backward = "closed form, equal to autograd on step 1" if closed_form else "autograd"
    return losses


def _autograd_bn(code, hpre, gamma, beta, dy):
    """The batch-norm layer's gradients by autograd through the learner's batchnorm_forward."""
    with torch.enable_grad():
        x, g, b = (t.detach().requires_grad_() for t in (hpre, gamma, beta))
        code.batchnorm_forward(x, g, b).backward(dy)
    return x.grad, g.grad, b.grad


def reference_loop(stage: Stage, code, Xtr, Ytr, steps: int) -> torch.Tensor:
    """The lecture's loop, as written in the notebook (autograd everywhere, one randint a step)."""
    p = {k: v.clone().requires_grad_() for k, v in stage.params.items()}
    bn = {k: v.clone() for k, v in stage.bn.items()}
    if bn:
        p["gamma"], p["beta"] = bn["gamma"].requires_grad_(), bn["beta"].requires_grad_()
    losses = torch.empty(1, steps)
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (BATCH,), generator=stage.gen)
        Xb, Yb = Xtr[ix], Ytr[ix]
        emb = p["C"][Xb]
        hpre = emb.view(emb.shape[0], -1) @ p["W1"]
        if bn:
            hpre_bn = code.batchnorm_forward(hpre, p["gamma"], p["beta"])
            with torch.no_grad():
                bn["running_mean"] = code.ema_update(bn["running_mean"], hpre.mean(0), BN_MOMENTUM)
                bn["running_var"] = code.ema_update(bn["running_var"], hpre.var(0), BN_MOMENTUM)
            hpre = hpre_bn
        else:
            hpre = hpre + p["b1"]
        logits = torch.tanh(hpre) @ p["W2"] + p["b2"]
        loss = F.cross_entropy(logits, Yb)
        for v in p.values():
            v.grad = None
        loss.backward()
        lr = lr_at(i, steps)
        for v in p.values():
            v.data += -lr * v.grad
        losses[0, i] = loss.item()
    stage.params.update({k: v.detach() for k, v in p.items() if k not in ("gamma", "beta")})
    if bn:
        stage.bn.update(gamma=p["gamma"].detach(), beta=p["beta"].detach(),
                        running_mean=bn["running_mean"], running_var=bn["running_var"])
    return losses


# ---------------------------------------------------------------------------------------------
# the whole loss log


def evaluate(stage: Stage, code, data) -> dict:
    """Final train and val loss with the learner's split_loss; for the BN stage also the
    calibrated statistics (learner's calibrate) against the running ones."""
    running = None
    out = {}
    if stage.bn:
        running = (stage.bn["running_mean"], stage.bn["running_var"])
        p = stage.params
        with torch.no_grad():
            hpre = p["C"][data.Xtr].view(data.Xtr.shape[0], -1) @ p["W1"]  # (182625, 200)
        calibrated = tuple(code.calibrate(hpre))
        out["calibrated"] = {
            "train": code.split_loss(logits_fn(stage, code, calibrated), data.Xtr, data.Ytr),
            "val": code.split_loss(logits_fn(stage, code, calibrated), data.Xdev, data.Ydev),
        }
    forward = logits_fn(stage, code, running)
    out["train"] = code.split_loss(forward, data.Xtr, data.Ytr)
    out["val"] = code.split_loss(forward, data.Xdev, data.Ydev)
    return out


def _bn_worker(stage, code, Xtr, Ytr, steps, conn):
    torch.set_num_threads(1)
    losses = train_batchnorm(stage, code, Xtr, Ytr, steps)
    # plain bytes: torch's own pickling of tensors shares file descriptors, which breaks when
    # this process exits before the parent has read them
    buffer = io.BytesIO()
    torch.save((stage.params, stage.bn, stage.bn_backward, losses), buffer)
    conn.send_bytes(buffer.getvalue())
    conn.close()


@contextmanager
def all_cores():
    """Whole-split evaluation is a few large matmuls, where a second thread pays (1.4 s of 3.5 s
    saved on 2 cores); the training steps use one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_parallel(steps: int) -> bool:
    """Two processes pay off from about 20,000 steps (a fork and a pipe cost well under 1 s)."""
    return (os.cpu_count() or 1) >= 2 and steps >= 20_000 and "fork" in multiprocessing.get_all_start_methods()


def loss_log(code, data, steps: int, names=STAGES, progress=None, parallel=None) -> list[dict]:
    """Init, train and evaluate every stage; one result dict per stage, in the lecture's order.

    progress(n_steps_done, running_loss) is called every 1000 steps (ten times in a short run).
    parallel: run the BN stage in a second process (default: when there are 2+ cores and the
    run is long enough to pay for the fork)."""
    stages = [init_stage(n, code, data.vocab_size, data.Xtr.shape[1]) for n in names]
    results = {s.name: {"stage": s.name, **first_batch(s, code, data.Xtr, data.Ytr)} for s in stages}
    plain = [s for s in stages if not s.bn]
    bns = [s for s in stages if s.bn]
    if parallel is None:
        parallel = use_parallel(steps)
    parallel = parallel and bool(plain) and bool(bns)
    workers = []
    if parallel:
        ctx = multiprocessing.get_context("fork")
        for stage in bns:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_bn_worker, args=(stage, code, data.Xtr, data.Ytr, steps, send))
            proc.start()
            send.close()
            workers.append((stage, proc, recv))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    losses = {}
    try:
        if plain:
            per_step = train_plain(plain, data.Xtr, data.Ytr, steps, progress)
            losses.update({s.name: per_step[i] for i, s in enumerate(plain)})
        if not parallel:
            for stage in bns:
                losses[stage.name] = train_batchnorm(stage, code, data.Xtr, data.Ytr, steps, progress)[0]
        for stage, proc, recv in workers:
            stage.params, stage.bn, stage.bn_backward, per_step = torch.load(io.BytesIO(recv.recv_bytes()))
            proc.join()
            losses[stage.name] = per_step[0]
    finally:
        for _, proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
        if parallel:
            torch.set_num_threads(threads)
    out = []
    for stage in stages:
        r = results[stage.name]
        with all_cores():
            r.update(evaluate(stage, code, data))
        r["lecture_train"], r["lecture_val"] = LECTURE[stage.name]
        r["title"] = TITLES[stage.name]
        r["final_batch_loss"] = losses[stage.name][-1000:].mean().item()
        if stage.bn:
            r["bn_backward"] = stage.bn_backward
        out.append(r)
    return out
