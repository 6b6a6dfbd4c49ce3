"""The lecture's MLP (part 1 and exercise E01): its stages, their init, its forward pass, and the
readable lecture loop that the fast path is tested against.

A stage is a configuration of one MLP (C, W1, b1, tanh, W2, b2) and one training path: only the
init differs, and the batch-norm stage swaps b1 for the learner's batchnorm_forward. Every stage
starts from a fresh `torch.Generator().manual_seed(SEED)`, draws its parameters in the lecture's
order (C, W1, b1, W2, b2), then its minibatch indices from the same generator. The learner's code
decides the init (`scale_output_layer`, `kaiming_normal`), the batch norm (`batchnorm_forward`,
`ema_update`, `batchnorm_eval`, `calibrate`) and the evaluation (`split_loss`).

Training: kata/fastmlp.py (batched stages, backward by hand), tested against `reference_loop`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kata import loop
from kata.facts import BATCH, BN_MOMENTUM, KAIMING_DEMO, N_EMBD, N_HIDDEN, SEED, TITLES, lr_at

EVAL_ROWS = 1024  # whole-split evaluation in blocks of this many rows (see blockwise)


@dataclass(frozen=True)
class StageConfig:
    """How one stage initialises the MLP; the draws are always C, W1, [b1], W2, b2."""
    title: str
    scale_output: bool = False  # the learner's scale_output_layer(W2, b2): W2 * 0.01, b2 * 0
    kaiming: bool = False  # W1 from the learner's kaiming_normal(fan_in, n_hidden, "tanh")
    w1_scale: float = 1.0  # the lecture's hand-tuned W1 * 0.2
    b1_scale: float = 1.0
    batchnorm: bool = False  # no b1 (BN's mean subtraction would cancel it); gamma 1, beta 0
    zero: bool = False  # every parameter * 0 after the draws (exercise E01)


CONFIGS = {
    "original": StageConfig(TITLES["original"]),
    "softmax": StageConfig(TITLES["softmax"], scale_output=True),
    "tanh": StageConfig(TITLES["tanh"], scale_output=True, w1_scale=0.2, b1_scale=0.01),
    "kaiming": StageConfig(TITLES["kaiming"], scale_output=True, kaiming=True, b1_scale=0.01),
    "batchnorm": StageConfig(TITLES["batchnorm"], scale_output=True, kaiming=True, batchnorm=True),
    # the original draws times 0, so its minibatches are the other stages' minibatches
    "zero_init": StageConfig("every parameter zero (exercise E01)", zero=True),
}


@dataclass
class Stage:
    """One stage's parameters, the generator its minibatches come from, and its training record."""
    name: str
    config: StageConfig
    params: dict  # C (V, 10), W1 (30, 200), b1 (200,) or gamma and beta (200,), W2 (200, V), b2 (V,)
    gen: torch.Generator
    running: torch.Tensor | None = None  # batch norm: (2, 200), running mean and (unbiased) var
    initial: dict = field(default_factory=dict)  # params right after init
    losses: torch.Tensor | None = None  # (steps,) minibatch losses, after training
    bn_backward: str = ""  # batch norm, after training: how the BN layer was differentiated

    def moved(self) -> list[str]:
        """The parameters that changed in training: those whose values differ from their init.
        A parameter whose gradient was zero at every step is bit-for-bit its init."""
        return [k for k, v in self.params.items() if not torch.equal(v, self.initial[k])]


def init_stage(name: str, code, vocab_size: int, block_size: int) -> Stage:
    """The lecture's init for one stage, drawn from a fresh generator with the lecture's seed."""
    cfg = CONFIGS[name]
    g = torch.Generator().manual_seed(SEED)
    fan_in = N_EMBD * block_size
    p = {"C": torch.randn((vocab_size, N_EMBD), generator=g)}
    if cfg.kaiming:
        W1 = code.kaiming_normal(fan_in, N_HIDDEN, "tanh", generator=g)
    else:
        W1 = torch.randn((fan_in, N_HIDDEN), generator=g)
    p["W1"] = W1 * cfg.w1_scale
    if not cfg.batchnorm:
        p["b1"] = torch.randn(N_HIDDEN, generator=g) * cfg.b1_scale
    W2, b2 = torch.randn((N_HIDDEN, vocab_size), generator=g), torch.randn(vocab_size, generator=g)
    p["W2"], p["b2"] = code.scale_output_layer(W2, b2) if cfg.scale_output else (W2, b2)
    running = None
    if cfg.batchnorm:
        p["gamma"], p["beta"] = torch.ones(N_HIDDEN), torch.zeros(N_HIDDEN)
        running = torch.stack((torch.zeros(N_HIDDEN), torch.ones(N_HIDDEN)))  # (2, 200): mean, var
    if cfg.zero:
        p = {k: v * 0 for k, v in p.items()}
    p = {k: v.detach().float().contiguous() for k, v in p.items()}
    return Stage(name, cfg, p, g, running, initial={k: v.clone() for k, v in p.items()})


def forward(p: dict, code, X, running=None) -> tuple:
    """The lecture's MLP on inputs X (N, block_size): (hpre, h, logits), where hpre is the lecture's
    hpreact before batch norm. With gamma in p: the learner's batchnorm_forward (batch statistics),
    or its batchnorm_eval when `running` = (mean, var) is given. Autograd-ready."""
    emb = p["C"][X]  # (N, block_size, n_embd)
    hpre = emb.view(emb.shape[0], -1) @ p["W1"]  # (N, n_hidden)
    if "gamma" not in p:
        hpre = hpre + p["b1"]
        pre_tanh = hpre
    elif running is None:
        pre_tanh = code.batchnorm_forward(hpre, p["gamma"], p["beta"])
    else:
        pre_tanh = code.batchnorm_eval(hpre, *running, p["gamma"], p["beta"])
    h = torch.tanh(pre_tanh)  # (N, n_hidden)
    return hpre, h, h @ p["W2"] + p["b2"]  # logits (N, vocab)


@dataclass
class FirstBatch:
    """The stage's first minibatch and its forward pass, before any update."""
    X: torch.Tensor  # (32, block_size)
    Y: torch.Tensor  # (32,)
    hpre: torch.Tensor  # (32, 200), the lecture's hpreact (before batch norm)
    h: torch.Tensor  # (32, 200), the tanh output
    loss: float


def first_batch(stage: Stage, code, Xtr, Ytr) -> FirstBatch:
    """The stage's step-0 minibatch; the generator is left untouched (a clone draws the indices)."""
    g = torch.Generator()
    g.set_state(stage.gen.get_state())
    ix = torch.randint(0, Xtr.shape[0], (BATCH,), generator=g)
    with torch.no_grad():
        hpre, h, logits = forward(stage.params, code, Xtr[ix])
    return FirstBatch(Xtr[ix], Ytr[ix], hpre, h, F.cross_entropy(logits, Ytr[ix]).item())


def reference_loop(stage: Stage, code, Xtr, Ytr, steps: int) -> torch.Tensor:
    """The lecture's loop for one stage (kata/loop.py: autograd, one torch.randint a step); the
    batch-norm stage's running statistics by the learner's ema_update, as the lecture's inline BN.
    Trains `stage` in place; returns its minibatch losses (steps,)."""
    p = {k: v.clone().requires_grad_() for k, v in stage.params.items()}
    running = None if stage.running is None else stage.running.clone()

    def logits(X):
        hpre, _, out = forward(p, code, X)
        if running is not None:
            with torch.no_grad():
                running[0] = code.ema_update(running[0], hpre.mean(0), BN_MOMENTUM)
                running[1] = code.ema_update(running[1], hpre.var(0), BN_MOMENTUM)  # unbiased
        return out

    losses = loop.lecture_loop(list(p.values()), logits, stage.gen, Xtr, Ytr, steps, lambda i: lr_at(i, steps))
    stage.params = {k: v.detach() for k, v in p.items()}
    stage.running, stage.losses = running, torch.tensor(losses)
    return stage.losses


def evaluate(stage: Stage, code, data) -> dict:
    """Train and val loss on the whole splits with the learner's split_loss; the batch-norm stage
    with its running statistics, and also with the learner's calibrate over the training set."""
    p, running = stage.params, None
    out = {}
    if stage.running is not None:
        running = tuple(stage.running)
        with torch.no_grad():
            hpre = p["C"][data.Xtr].view(data.Xtr.shape[0], -1) @ p["W1"]  # (182625, 200)
        calibrated = tuple(code.calibrate(hpre))
        logits = blockwise(lambda X: forward(p, code, X, calibrated)[2])
        out["calibrated"] = {"train": code.split_loss(logits, data.Xtr, data.Ytr),
                             "val": code.split_loss(logits, data.Xdev, data.Ydev)}
    logits = blockwise(lambda X: forward(p, code, X, running)[2])
    out["train"] = code.split_loss(logits, data.Xtr, data.Ytr)
    out["val"] = code.split_loss(logits, data.Xdev, data.Ydev)
    return out


def blockwise(forward, rows: int = EVAL_ROWS):
    """`forward` a block of rows at a time, the logits concatenated: the same logits as one pass,
    but each block's (rows, 200) activations stay in the CPU cache, where the whole training set's
    (182625, 200) do not (0.21 s instead of 0.47 s a split on one core)."""
    return lambda X: torch.cat([forward(X[i:i + rows]) for i in range(0, X.shape[0], rows)])  # (N, vocab)


def fan_in_demo(code, gen: torch.Generator) -> dict:
    """The lecture's Kaiming demo: x (1000, 10) and w (10, 200) from randn; x @ (w * scale) for
    scale 5, 0.2 and the learner's kaiming_std(10, "linear") = 1 / sqrt(10). Returns
    {"x": x, "y": {label: x @ (w * scale)}, "scale": {label: scale}}."""
    x = torch.randn(1000, 10, generator=gen)
    w = torch.randn(10, 200, generator=gen)
    scales = dict(zip(KAIMING_DEMO, (5.0, 0.2, code.kaiming_std(10, "linear"))))  # "w * 5": 5.0, ...
    return {"x": x, "y": {k: x @ (w * s) for k, s in scales.items()}, "scale": scales}  # y: (1000, 200)
