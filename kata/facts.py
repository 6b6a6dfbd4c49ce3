"""The lecture's setup and every number it prints, in one place.

`python -m kata lecture` prints these beside the learner's; its training code reads the setup from
here, and meta/test_lecture.py checks the learner-independent figures against the same values.
"printed" is what the lecture's final notebook printed, "measured" was re-measured with the
lecture's seed and draw order (the video only says "about 27" and so on).
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# setup: the MLP of part 1 and exercise E01

SEED = 2147483647  # torch.Generator().manual_seed(SEED) draws C, W1, b1, W2, b2, then the minibatches
N_EMBD, N_HIDDEN, BATCH = 10, 200, 32
STEPS = 200_000
LR, LR_LATE = 0.1, 0.01  # lr 0.1, then 0.01 from step 100,000 (half-way)
BN_EPS = 1e-5  # batchnorm_forward's default (its docstring in solutions/batchnorm.py)
BN_MOMENTUM = 0.001  # the lecture's inline BN: running = 0.999 * running + 0.001 * batch
SATURATED = 0.99  # part 1 counts |h| > 0.99 as saturated (the deep net's tables use 0.97)
SMOOTH = 1000  # the loss plot: plt.plot(torch.tensor(lossi).view(-1, 1000).mean(1))

# ---------------------------------------------------------------------------------------------
# part 1: the loss log

STAGES = ("original", "softmax", "tanh", "kaiming", "batchnorm")  # the order of `lecture --json`'s loss_log
TITLES = {  # the lecture's own labels in its loss log
    "original": "original",
    "softmax": "fix softmax confidently wrong",
    "tanh": "fix tanh layer too saturated at init",
    "kaiming": 'use semi-principled "kaiming init" instead',
    "batchnorm": "add batch norm layer",
}
LOSS_LOG = {  # printed after 200,000 steps: (train, val)
    "original": (2.1245, 2.1682),
    "softmax": (2.07, 2.13),
    "tanh": (2.0356, 2.1027),
    "kaiming": (2.0377, 2.1070),
    "batchnorm": (2.0668, 2.1048),
}
INIT_LOSS = {"original": 27.8817, "softmax": 3.3221}  # first minibatch (measured; "27" said)
INIT_LOSS_TRAIN_SET = 26.0047  # the naive init on the whole training set (measured)
SCALED_INIT_LOSS = {0.1: 4.2326, 0.01: INIT_LOSS["softmax"]}  # first minibatch after W2 * scale, b2 * 0 (measured)
HPREACT_RANGE = (-19, 18)  # the naive init's pre-activations on the first minibatch, about (measured)
INIT_SATURATION = {"original": 0.6095, "tanh": 0.0098, "kaiming": 0.0814}  # |h| > 0.99, first minibatch
HPREACT_STD = {"original": 5.18, "tanh": 1.00, "kaiming": 1.52}  # first minibatch (measured)
DEAD_NEURONS = {"original": 0, "tanh": 0, "kaiming": 0}  # units saturated for all 32 examples (measured)
BN_EMA_VAL = 2.1057  # the BN stage's val loss with the running (EMA) statistics (printed)
KAIMING_DEMO = {"w * 5": 15.8, "w * 0.2": 0.63, "w / sqrt(10)": 1.00}  # std of x @ w, x (1000, 10)

# ---------------------------------------------------------------------------------------------
# exercise E01: every parameter starts at zero

UNIGRAM_LOSS = {"train": 2.8226, "val": 2.8204}  # entropy of the targets, nats (measured)
ZERO_INIT_MEASURED = {"steps": 30_000, "train": 2.8230, "val": 2.8214, "moved": ("b2",)}
TRAINED_VAL = 2.10  # what the trained MLP reaches instead (the loss log's fixed stages: 2.10-2.11)

# ---------------------------------------------------------------------------------------------
# part 2: the deep net

DEEP_N_EMBD, DEEP_N_HIDDEN, DEEP_DEPTH = 10, 100, 5
DEEP_STEPS, DEEP_LR = 1001, 0.1  # the notebook breaks after i = 1000
DEEP_SATURATED = 0.97  # activation_stats' default threshold, as the lecture's viz #1
PARAMETERS = {"mlp": 11_897, "mlp_batchnorm": 12_097, "deep": 46_497, "deep_batchnorm": 47_024}
DEEP_NET = {  # printed after 1,001 steps (with batch norm, gain 1)
    "step0_loss": 3.2870, "train": 2.4003, "val": 2.3982,
    "tanh": [(2, -0.00, 0.63, 0.0278, 2.64e-3), (5, 0.00, 0.64, 0.0256, 2.25e-3),
             (8, -0.00, 0.65, 0.0225, 2.05e-3), (11, 0.00, 0.65, 0.0169, 1.98e-3),
             (14, 0.00, 0.65, 0.0188, 1.95e-3)],  # (layer, mean, std, saturated, grad std)
    "weights": [((27, 10), 8.02e-3, 8.01e-3), ((30, 100), 9.24e-3, 4.88e-2),
                ((100, 100), 7.13e-3, 6.96e-2), ((100, 100), 6.23e-3, 6.07e-2),
                ((100, 100), 5.74e-3, 5.63e-2), ((100, 100), 5.67e-3, 5.57e-2),
                ((100, 27), 1.21e-2, 1.16e-1)],  # (shape, grad std, grad:data)
}
UPDATE_RATIO_GUIDE = -3  # viz #4: log10 of the update:data ratio should sit near -3


def lr_at(step: int, steps: int = STEPS) -> float:
    """The lecture's schedule, scaled to the run: LR, then LR_LATE for the second half."""
    return LR if step < steps // 2 else LR_LATE
