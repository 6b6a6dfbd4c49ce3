"""The workbook: notebooks/workbook.ipynb, the lecture top to bottom in one notebook, made from solutions/.

    python -m kata.workbook                    # write notebooks/workbook.ipynb (stubs, no outputs)
    python -m kata.workbook --check            # exit 1 if notebooks/workbook.ipynb is not what would be written
    python -m kata.workbook --reference PATH   # write the reference version (solution bodies) to PATH

For each topic, in curriculum order, the notebook has its spec (the module's and functions' docstrings
as markdown), its stub (kata/generate.py's stub of solutions/<topic>.py, as a code cell), a check cell,
and the lecture's experiment for it, run with the learner's own functions. An experiment cell starts
with `if ready(...)`: until the topics it calls are done, it prints one line saying which to finish.

`ready` is the one piece of this module that runs inside the notebook.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from kata import generate, readiness, topics
from kata.loader import BUILTIN, ROOT, show_path

NOTEBOOK = ROOT / "notebooks" / "workbook.ipynb"


# ---------------------------------------------------------------------------------------------
# in the notebook: is a topic done enough for an experiment to call it?


def check_call(topic: str) -> str:
    """The check cell's call, e.g. check("modules", Linear, BatchNorm1d, Tanh)."""
    return f'check("{topic}", {", ".join(topics.get(topic).names)})'


def problem(topic: str, namespace: dict) -> str:
    """Why `topic` is not ready for an experiment ('' when it is): a name not defined, a stub that
    still raises NotImplementedError, or a quick call (kata/readiness.py) that fails or returns a
    wrong value."""
    names = topics.get(topic).names
    missing = [name for name in names if name not in namespace]
    if missing:
        return (f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not defined: run the {topic} "
                f"cell, then {check_call(topic)}")
    used = [n for t in (topic, *topics.get(topic).uses) for n in topics.get(t).names if n in namespace]
    found = readiness.problem(topic, types.SimpleNamespace(**{n: namespace[n] for n in used}))
    if found is None:
        return ""
    return f"{check_call(topic)} says what is left" if found[1] == "todo" else \
        f"{found[1]}; {check_call(topic)} says what is left"


def ready(*needed: str) -> bool:
    """True when every topic in `needed` is done enough for the experiment that follows. Otherwise
    print one line naming the earliest unfinished one in the curriculum, and return False."""
    namespace = vars(sys.modules["__main__"])  # the notebook's names, where check() looks too
    for topic in sorted(needed, key=topics.NAMES.index):
        why = problem(topic, namespace)
        if why:
            print(f"finish {topic} first: {why}")
            return False
    return True


# ---------------------------------------------------------------------------------------------
# a topic's spec as markdown


_LABEL = re.compile(r"^(Formula[^:]*|Shape|Lecture value|Note):[ \t]*(.*)$", re.S)
_CODE_LABELS = ("Formula", "Shape")  # formulas and shapes keep their line breaks and spacing


def prose(text: str) -> str:
    """Docstring text as markdown: every `*` and `_` escaped (`(1 - m)**k` and `__call__` are not
    emphasis), except inside backtick spans, which markdown shows verbatim."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # the even parts lie outside backticks
        parts[i] = re.sub(r"[*_]", lambda m: "\\" + m.group(0), parts[i])
    return "".join(parts)


def _block(label: str, text: str) -> str:
    """A Formula or Shape paragraph as a text block; continuation lines lose the indent that
    aligned them under the text after the label."""
    first, *rest = text.split("\n")
    indent = min((len(line) - len(line.lstrip()) for line in rest if line.strip()), default=0)
    cut = min(indent, len(label) + 2)
    return "\n".join([f"**{label}**", "```text", first, *(line[cut:] for line in rest), "```"])


def docstring_markdown(doc: str) -> str:
    """Summary, Formula, Shape, Lecture value and Note of one docstring, as markdown."""
    out = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        m = _LABEL.match(paragraph)
        if m and m.group(1).startswith(_CODE_LABELS):
            out.append(_block(m.group(1), m.group(2)))
        elif m:
            out.append(f"**{m.group(1)}:** {prose(m.group(2))}")
        else:
            out.append(prose(paragraph))
    return "\n\n".join(out)


def _signature(node, lines: list[str]) -> str:
    """`name(args)` as written in the source (ast.unparse would write 1e-5 as 1e-05): the def's
    lines up to the one that ends in a colon."""
    header = []
    for line in lines[node.lineno - 1:]:
        header.append(line.strip())
        if line.rstrip().endswith(":"):
            break
    text = re.sub(r"^(?:async\s+)?def\s+", "", " ".join(header)).rstrip(":").strip()
    return re.sub(r"\s*->.*$", "", text).replace("( ", "(").replace(" )", ")")


def spec_markdown(topic: str, solution: str) -> str:
    """The markdown cell before a topic's code: its title, module docstring and each function's or
    class's docstring, and how to check it."""
    t = topics.get(topic)
    tree, lines = ast.parse(solution), solution.splitlines()
    number = topics.NAMES.index(topic) + 1
    intro = re.sub(r"^Topic \d+, \w+: ", "", inspect.cleandoc(ast.get_docstring(tree, clean=False) or ""))
    intro = intro[:1].upper() + intro[1:]
    intro = re.sub(r"See kata/notes/(\w+)\.md", r'See `explain("\1")`', intro)  # it prints that file
    parts = [f"## {number}. `{topic}`: {t.section}", "\n\n".join(prose(p) for p in intro.split("\n\n"))]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            args = re.sub(r"^__init__\(self,?\s*", "", _signature(init, lines) if init else "__init__(self)")
            heading = f"### class `{node.name}({args}`"  # the arguments the caller passes
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            heading = f"### `{_signature(node, lines)}`"
        else:
            continue
        parts += [heading, docstring_markdown(ast.get_docstring(node, clean=False) or "")]
    parts.append(f"Replace each `raise NotImplementedError` in the cell below with your code and run it, then "
                 f"the check cell after it. Stuck? `hint(\"{topic}\")` (one level deeper each call); the "
                 f"viewer questions: `explain(\"{topic}\")`.")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# a topic's code cell


def reference_source(solution: str) -> str:
    """The solution with its BEGIN/END SOLUTION marker lines taken out (the bodies stay)."""
    return "".join(line for line in solution.splitlines(keepends=True)
                   if line.strip() not in (generate.BEGIN, generate.END))


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def notebook_code(module_text: str) -> str:
    """A topic module's text (stub or reference) as a notebook cell: the module docstring and the
    exercise file's header go (the markdown cell above has them), each docstring shrinks to its
    summary, and a relative import becomes a comment (those classes are defined in an earlier cell)."""
    tree, lines = ast.parse(module_text), module_text.splitlines(keepends=True)
    edits = []  # (first line index, end line index, replacement lines)
    if tree.body and _is_docstring(tree.body[0]):
        edits.append((tree.body[0].lineno - 1, tree.body[0].end_lineno, []))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            names = " and ".join(a.asname or a.name for a in node.names)
            edits.append((node.lineno - 1, node.end_lineno, [f"# {names}: your classes, from the {node.module} cell\n"]))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and _is_docstring(node.body[0]):
            doc = node.body[0]
            summary = " ".join(inspect.cleandoc(doc.value.value).split("\n\n")[0].split())
            edits.append((doc.lineno - 1, doc.end_lineno, [f'{" " * doc.col_offset}"""{summary}"""\n']))
    for start, end, replacement in sorted(edits, reverse=True):
        lines[start:end] = replacement
    text = "".join(lines)
    text = re.sub(r"\A(?:#[^\n]*\n|\s*\n)*", "", text)  # the exercise file's header comment
    text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text).strip() + "\n"
    ast.parse(text)  # a summary with quotes in it must not break the cell
    return text


def topic_code(topic: str, solution: str, reference: bool) -> str:
    """The stub (kata/generate.py's, as exercises/ has it) or the reference, as a cell."""
    return notebook_code(reference_source(solution) if reference else generate.stub_source(solution, topic, "notebook"))


# ---------------------------------------------------------------------------------------------
# the notebook's own cells: set-up, data, and the lecture's experiments


SETUP = '''\
# Find the kata: the clone this notebook sits in (the kernel starts in notebooks/ or at the root),
# else the installed package (pip install -e ".[notebook]", or Colab's pip install).
import sys
from pathlib import Path

for folder in (Path.cwd(), *Path.cwd().parents):
    if (folder / "kata" / "topics.py").is_file() and (folder / "grader.py").is_file():
        sys.path.insert(0, str(folder))
        break
try:
    import kata
except ModuleNotFoundError:
    raise ModuleNotFoundError('the kata is not installed here: pip install -e ".[notebook]" in a clone, or in '
                              'Colab first run the install cell from the README, "In Colab, without a clone"') from None

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import kata.data
from grader import check, explain, hint  # grade what you define in a cell; hints; viewer questions
from kata.workbook import ready          # an experiment runs only once the topics it calls are done
from kata import facts                       # the lecture's printed and measured numbers, beside yours
DEEP_NET, LOSS_LOG = facts.DEEP_NET, facts.LOSS_LOG

%matplotlib inline
torch.set_num_threads(1)  # tiny tensors: one thread is faster than two that keep synchronising
'''

INTRO = """\
# makemore Part 3: Activations & Gradients, BatchNorm (the workbook)

This notebook follows Andrej Karpathy's lecture from top to bottom. For each of the kata's twelve
topics it gives the spec (formula, shapes, the value the lecture shows, and a note where the lecture
and torch differ), a code cell with the stub for you to fill in, a check cell that grades your code
with the kata's tests, and then the lecture's experiment for that topic, run with **your** functions.

Run the cells in order. Until a topic passes, its check cell says what is wrong and the experiments
that need it print one line saying which topic to finish first; nothing stops with an error.

* `check("batchnorm", batchnorm_forward)` grades your code in a separate process and prints the verdict;
* `hint("batchnorm")` prints the next hint level (concept, formula, near-solution);
* `explain("batchnorm")` answers questions viewers asked about that part of the lecture.

The experiments use the lecture's data, seeds and sizes, with shorter training runs than its
200,000 steps so that each cell takes seconds. `python -m kata lecture` runs the full length.

Locally: `pip install -e ".[notebook]"` in the kata's folder, then open this file in Jupyter or
VS Code. In Colab: run the install cell from the README's "In Colab, without a clone" first."""

DATA = '''\
data = kata.data.load()  # names.txt: $MAKEMORE_NAMES, the user cache, or a download (once, checked by sha256)
Xtr, Ytr, Xdev, Ydev = data.Xtr, data.Ytr, data.Xdev, data.Ydev
vocab_size, block_size = data.vocab_size, Xtr.shape[1]
print(f"{len(Xtr):,} / {len(Xdev):,} / {len(data.Xte):,} train / val / test examples, "
      f"vocabulary {vocab_size}, block size {block_size}")  # the lecture: 182,625 / 22,655 / 22,866, 27, 3
'''

MLP = '''\
# The lecture's MLP. These definitions call none of your code; the experiments below do.
n_embd, n_hidden, batch_size = 10, 200, 32


def draw_mlp(kaiming=False):
    """[C, W1, b1, W2, b2] drawn from the lecture's seed in its order, all randn (the naive init), and
    the generator, which draws the minibatches next. kaiming=True draws W1 with your kaiming_normal."""
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    if kaiming:
        W1 = kaiming_normal(n_embd * block_size, n_hidden, "tanh", generator=g)
    else:
        W1 = torch.randn((n_embd * block_size, n_hidden), generator=g)
    b1 = torch.randn(n_hidden, generator=g)
    W2 = torch.randn((n_hidden, vocab_size), generator=g)
    b2 = torch.randn(vocab_size, generator=g)
    return [C, W1, b1, W2, b2], g


def mlp_forward(X, C, W1, b1, W2, b2):
    """(hpreact, h, logits) for the contexts X (N, block_size)."""
    emb = C[X]                                       # (N, block_size, n_embd)
    hpreact = emb.view(emb.shape[0], -1) @ W1 + b1   # (N, n_hidden)
    h = torch.tanh(hpreact)                          # (N, n_hidden)
    return hpreact, h, h @ W2 + b2                   # logits: (N, vocab_size)


def train_mlp(parameters, g, steps, lr=0.1):
    """The lecture's training loop (batch 32, SGD at one lr); the log10 of each step's loss."""
    for p in parameters:
        p.requires_grad = True
    lossi = []
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(mlp_forward(Xtr[ix], *parameters)[2], Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
    return lossi


def first_batch(g):
    """The first minibatch the lecture's loop would draw from g."""
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    return Xtr[ix], Ytr[ix]
'''

DEEP_NET = '''\
# The lecture's deep net, built from your Linear, BatchNorm1d and Tanh when called. These definitions
# call none of your code.
deep_hidden, depth = 100, 5


def build_deep_net(batchnorm=True, bias=None, weight_gain=1.0):
    """C and the layers of the lecture's final notebook: 5 x [Linear, BatchNorm1d, Tanh], Linear,
    BatchNorm1d, drawn from its seed (C, then each weight); without batch norm its earlier net,
    5 x [Linear, Tanh], Linear. bias: the Linear layers' (default: only without batch norm).
    Returns C, the layers, and the generator, which draws the minibatches next."""
    bias = not batchnorm if bias is None else bias
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    layers, fan_in = [], n_embd * block_size
    for _ in range(depth):
        layers.append(Linear(fan_in, deep_hidden, bias=bias, generator=g))
        layers += [BatchNorm1d(deep_hidden), Tanh()] if batchnorm else [Tanh()]
        fan_in = deep_hidden
    layers.append(Linear(deep_hidden, vocab_size, bias=bias, generator=g))
    if batchnorm:
        layers.append(BatchNorm1d(vocab_size))
    with torch.no_grad():
        if batchnorm:
            layers[-1].gamma *= 0.1   # the last layer less confident at init
        else:
            layers[-1].weight *= 0.1
        for layer in layers[:-1]:     # with batch norm this includes the last Linear, as in the notebook
            if isinstance(layer, Linear):
                layer.weight *= weight_gain
    for p in deep_parameters(C, layers):
        p.requires_grad = True
    return C, layers, g


def deep_parameters(C, layers):
    return [C] + [p for layer in layers for p in layer.parameters()]


def deep_forward(C, layers, X):
    emb = C[X]                       # (N, block_size, n_embd)
    x = emb.view(emb.shape[0], -1)   # (N, block_size * n_embd)
    for layer in layers:
        x = layer(x)
    return x                         # logits: (N, vocab_size)


def train_deep_net(C, layers, g, steps=1001, lr=0.1, record=None):
    """The notebook's loop, steps i = 0 .. steps - 1 at one lr. Afterwards each layer's .out holds the
    last step's output and .out.grad its gradient, and each weight its .grad: what the plots show.
    record(parameters, lr), if given, runs after each update; returns (lossi, its results)."""
    parameters = deep_parameters(C, layers)
    lossi, records = [], []
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(deep_forward(C, layers, Xtr[ix]), Ytr[ix])
        for layer in layers:
            layer.out.retain_grad()  # keep the gradient at every layer's output for viz #2
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
        if record is not None:
            with torch.no_grad():
                records.append(record(parameters, lr))
    return lossi, records


def set_training(layers, training):
    """Batch norm's mode: batch statistics (True) or the running ones (False)."""
    for layer in layers:
        if isinstance(layer, BatchNorm1d):
            layer.training = training
'''


@dataclass(frozen=True)
class Experiment:
    id: str                 # the cell's id; the tests know each experiment by it
    after: str              # the topic whose check cell it follows
    needs: tuple[str, ...]  # the topics whose code it calls: the cell runs under `if ready(*needs):`
    intro: str              # markdown: what the lecture shows here
    code: str               # the body of the `if ready(...)` block


EXPERIMENTS = (
    Experiment("starter", "no_grad", ("no_grad",), """\
### Experiment: the starter MLP's loss at init

The lecture's MLP (embedding 10, hidden 200), drawn from its seed with every parameter `randn`,
evaluated on whole splits with your `split_loss`. The lecture trains it 200,000 steps to
train 2.1245, val 2.1682; at init it is far worse than guessing (-log(1/27) = 3.2958).""", '''\
parameters, g = draw_mlp()
forward = lambda X: mlp_forward(X, *parameters)[2]
print(f"split_loss at init: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f}")
print("the lecture (measured): train 26.0047 at init; a uniform guess would give 3.2958")
'''),
    Experiment("initial_loss", "initial_loss", ("initial_loss",), """\
### Experiment: fixing the initial loss

The first minibatch of the lecture's loop, with the naive init and after your `scale_output_layer`,
and the lecture's "hockey stick": the first few hundred steps of the naive net only squash the logits
back down, which the fixed init never needs to do.""", '''\
parameters, g = draw_mlp()
C, W1, b1, W2, b2 = parameters
Xb, Yb = first_batch(g)
logits = mlp_forward(Xb, *parameters)[2]
print(f"expected at init: -log(1/{vocab_size}) = {expected_initial_loss(vocab_size):.4f}")
print(f"naive init, first batch: {F.cross_entropy(logits, Yb).item():.4f} (the lecture: {facts.INIT_LOSS['original']}); "
      f"logits from {logits.min().item():.1f} to {logits.max().item():.1f}: confidently wrong")
for scale, lecture in ((0.1, 4.2326), (0.01, 3.3221), (0.0, 3.2958)):
    W2s, b2s = scale_output_layer(W2, b2, scale)
    loss = F.cross_entropy(mlp_forward(Xb, C, W1, b1, W2s, b2s)[2], Yb).item()
    print(f"scale_output_layer(W2, b2, {scale}): first batch {loss:.4f} (the lecture: {lecture})")

steps = 1_000
naive, g_naive = draw_mlp()
fixed, g_fixed = draw_mlp()
fixed[3], fixed[4] = scale_output_layer(fixed[3], fixed[4])
plt.figure(figsize=(12, 4))
plt.plot(train_mlp(naive, g_naive, steps), label="naive init (W2, b2 randn)")
plt.plot(train_mlp(fixed, g_fixed, steps), label="scale_output_layer(W2, b2): W2 * 0.01, b2 * 0")
plt.xlabel("step"); plt.ylabel("log10 loss"); plt.legend()
plt.title(f"the first {steps:,} steps: the naive init's hockey stick")
plt.show()
'''),
    Experiment("saturation", "saturation", ("initial_loss", "saturation"), """\
### Experiment: the saturated tanh

The lecture's first minibatch after the softmax fix, with W1 and b1 still `randn`: the
pre-activations are wide, so most tanh outputs sit in the flat tails where `1 - h**2` is about 0.
White in the image is |h| > 0.99 (rows: the 32 examples, columns: the 200 neurons); an all-white
column would be a dead neuron. Then the lecture's fix, `W1 * 0.2, b1 * 0.01`.""", '''\
parameters, g = draw_mlp()
parameters[3], parameters[4] = scale_output_layer(parameters[3], parameters[4])  # the softmax fix
C, W1, b1, W2, b2 = parameters
Xb, Yb = first_batch(g)
hpreact, h, _ = mlp_forward(Xb, *parameters)
print(f"hpreact: std {hpreact.std().item():.2f}, from {hpreact.min().item():.1f} to {hpreact.max().item():.1f} "
      "(the lecture: std 5.18, about -19 to 18)")
print(f"saturation_fraction(h) = {saturation_fraction(h):.4f}: {saturation_fraction(h):.2%} of |h| > 0.99 "
      f"(the lecture: {facts.INIT_SATURATION['original']:.2%})")
print(f"dead_neurons(h): {int(dead_neurons(h).sum())} of {n_hidden} neurons saturated for every example "
      "(the lecture: none)")
local = tanh_backward(h, torch.ones_like(h))  # 1 - h**2: the share of the gradient each unit lets through
print(f"tanh_backward(h, 1): on average {local.mean().item():.1%} of the gradient gets through")

plt.figure(figsize=(20, 10))
plt.imshow(h.abs() > 0.99, cmap="gray", interpolation="nearest")
plt.title("h.abs() > 0.99 on the first batch, naive W1 and b1 (white: saturated)")
plt.show()

fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
left.hist(h.view(-1).tolist(), 50); left.set_title("h: piled up at -1 and 1")
right.hist(hpreact.view(-1).tolist(), 50); right.set_title("hpreact: too wide for tanh")
plt.show()

hpreact2, h2, _ = mlp_forward(Xb, C, W1 * 0.2, b1 * 0.01, W2, b2)
print(f"W1 * 0.2, b1 * 0.01: hpreact std {hpreact2.std().item():.2f}, {saturation_fraction(h2):.2%} saturated "
      f"(the lecture: {facts.HPREACT_STD['tanh']:.2f}, {facts.INIT_SATURATION['tanh']:.2%})")
fig, (image, left, right) = plt.subplots(1, 3, figsize=(20, 4))
image.imshow(h2.abs() > 0.99, cmap="gray", interpolation="nearest", aspect="auto")
image.set_title("h.abs() > 0.99 after W1 * 0.2, b1 * 0.01")
left.hist(h2.view(-1).tolist(), 50); left.set_title("h")
right.hist(hpreact2.view(-1).tolist(), 50); right.set_title("hpreact")
plt.show()
'''),
    Experiment("kaiming", "kaiming", ("initial_loss", "saturation", "kaiming"), """\
### Experiment: calculating the init scale

The lecture's demo: x (1000, 10) of unit Gaussians times a (10, 200) weight. With `randn` weights
each output sums 10 products, so its std grows to sqrt(10) = 3.16; `w * 5` and `w * 0.2` miss in
either direction; `w / sqrt(fan_in)` keeps it at 1. tanh squashes, so Kaiming init adds a gain of 5/3.
(The lecture draws these with torch's global generator; here a seeded one, so the figures repeat.)""", '''\
g = torch.Generator().manual_seed(2147483647)
x = torch.randn(1000, 10, generator=g)
w = torch.randn(10, 200, generator=g)
cases = {"w": w, "w * 5": w * 5, "w * 0.2": w * 0.2, "w / sqrt(10)": w / 10**0.5}
fig, axes = plt.subplots(1, 5, figsize=(20, 3.5), sharex=True)
axes[0].hist(x.view(-1).tolist(), 50, density=True)
axes[0].set_title(f"x: std {x.std().item():.2f}")
for ax, (name, weight) in zip(axes[1:], cases.items()):
    y = x @ weight  # (1000, 200)
    ax.hist(y.view(-1).tolist(), 50, density=True)
    ax.set_title(f"x @ {name}: std {y.std().item():.2f}")
axes[0].set_xlim(-20, 20)  # one scale for all five (w * 5 reaches past it): the widths compare directly
plt.show()
print("the lecture: x @ w std about 3.16, " + ", ".join(f"{k} {v}" for k, v in facts.KAIMING_DEMO.items()))

for name in ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
    print(f"gain({name!r}) = {gain(name):.4f}   torch.nn.init.calculate_gain: "
          f"{torch.nn.init.calculate_gain(name):.4f}")
print(f"kaiming_std(30) = {kaiming_std(30):.4f} (the lecture: (5/3) / sqrt(30) = 0.3043)")

parameters, g = draw_mlp(kaiming=True)
parameters[2] = parameters[2] * 0.01  # b1 * 0.01, as the lecture
parameters[3], parameters[4] = scale_output_layer(parameters[3], parameters[4])
hpreact, h, _ = mlp_forward(first_batch(g)[0], *parameters)
print(f"W1 = kaiming_normal(30, 200): std {parameters[1].std().item():.4f}; first batch hpreact std "
      f"{hpreact.std().item():.2f}, {saturation_fraction(h):.2%} of |h| > 0.99 "
      f"(the lecture: {facts.HPREACT_STD['kaiming']:.2f}, {facts.INIT_SATURATION['kaiming']:.2%})")
fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
left.hist(h.view(-1).tolist(), 50); left.set_title("h with Kaiming init")
right.hist(hpreact.view(-1).tolist(), 50); right.set_title("hpreact with Kaiming init")
plt.show()
'''),
    Experiment("batchnorm", "batchnorm", ("saturation", "batchnorm"), """\
### Experiment: batch normalization on the first batch

Batch norm makes the pre-activations unit Gaussian-ish by construction, whatever the init: here
the naive W1, whose pre-activations have std 5.18, through your `batchnorm_forward` with gain
ones and bias zeros. (b1 is still in hpreact here; the mean subtraction removes it, which is why the
lecture drops it, topic 8.)""", '''\
parameters, g = draw_mlp()
hpreact, h, _ = mlp_forward(first_batch(g)[0], *parameters)
hbn = batchnorm_forward(hpreact, torch.ones(n_hidden), torch.zeros(n_hidden))
print(f"before: column means up to {hpreact.mean(0).abs().max().item():.2f}, column std "
      f"{hpreact.std(0).mean().item():.2f} on average; tanh saturated {saturation_fraction(h):.2%}")
print(f"after:  column means up to {hbn.mean(0).abs().max().item():.1e}; column std "
      f"{hbn.std(0, unbiased=False).mean().item():.4f} dividing by N, {hbn.std(0).mean().item():.4f} by N - 1 "
      f"(sqrt(32/31) = {(32 / 31) ** 0.5:.4f}); tanh saturated {saturation_fraction(torch.tanh(hbn)):.2%}")
fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
left.hist(hpreact.view(-1).tolist(), 50); left.set_title("hpreact, naive init")
right.hist(hbn.view(-1).tolist(), 50); right.set_title("batchnorm_forward(hpreact, ones, zeros)")
plt.show()
'''),
    Experiment("bn_training", "running_stats", ("no_grad", "initial_loss", "kaiming", "batchnorm", "running_stats"),
               """\
### Experiment: training with batch norm, and inference with running statistics

The lecture's last MLP stage: Kaiming W1, no b1, your `batchnorm_forward` in every step, and the
running mean and variance tracked with your `ema_update` (momentum 0.001, the lecture's
`0.999 * running + 0.001 * batch`). After training, your `calibrate` measures them on the whole
training set instead, and `batchnorm_eval` evaluates with either: the two give almost the same loss.
This run is 5,000 steps, 2.5% of the lecture's 200,000 (lr 0.1, then 0.01 for the second half, the
lecture's schedule compressed), so its losses are higher than the lecture's.""", '''\
steps = 5_000
g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab_size, n_embd), generator=g)
W1 = kaiming_normal(n_embd * block_size, n_hidden, "tanh", generator=g)  # no b1: batch norm would cancel it
W2, b2 = scale_output_layer(torch.randn((n_hidden, vocab_size), generator=g), torch.randn(vocab_size, generator=g))
bngain, bnbias = torch.ones(n_hidden), torch.zeros(n_hidden)
bnmean_running, bnvar_running = torch.zeros(n_hidden), torch.ones(n_hidden)
parameters = [C, W1, W2, b2, bngain, bnbias]
print(f"{sum(p.nelement() for p in parameters):,} parameters (the lecture: 12,097)")
for p in parameters:
    p.requires_grad = True

lossi = []
for i in range(steps):
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    emb = C[Xtr[ix]]                                  # (32, block_size, n_embd)
    hpreact = emb.view(emb.shape[0], -1) @ W1         # (32, n_hidden)
    with torch.no_grad():
        bnmean_running = ema_update(bnmean_running, hpreact.mean(0))
        bnvar_running = ema_update(bnvar_running, hpreact.var(0))  # unbiased, as torch tracks it
    h = torch.tanh(batchnorm_forward(hpreact, bngain, bnbias))
    loss = F.cross_entropy(h @ W2 + b2, Ytr[ix])
    for p in parameters:
        p.grad = None
    loss.backward()
    lr = 0.1 if i < steps // 2 else 0.01
    for p in parameters:
        p.data += -lr * p.grad
    lossi.append(loss.log10().item())

plt.figure(figsize=(12, 4))
plt.plot(torch.tensor(lossi).view(-1, 100).mean(1))  # the mean of every 100 steps, as the lecture smooths it
plt.xlabel("step / 100"); plt.ylabel("log10 loss"); plt.title(f"the MLP with batch norm, {steps:,} steps")
plt.show()

with torch.no_grad():
    emb = C[Xtr]
    bnmean, bnvar = calibrate(emb.view(emb.shape[0], -1) @ W1)  # over all 182,625 training examples
estimates = {"running (EMA)": (bnmean_running, bnvar_running), "calibrated": (bnmean, bnvar)}
for label, (mean, var) in estimates.items():
    forward = lambda X: torch.tanh(batchnorm_eval(C[X].view(len(X), -1) @ W1, mean, var, bngain, bnbias)) @ W2 + b2
    print(f"{label:>14}: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f}")
print(f"EMA vs calibrated mean: at most {(bnmean_running - bnmean).abs().max().item():.3f} apart")
train, val = LOSS_LOG["batchnorm"]
print(f"after {steps:,} steps; the lecture after 200,000: train {train}, val {val} (val 2.1057 with the EMA)")
'''),
    Experiment("deep_net", "modules", ("modules",), """\
### Experiment: the deep net, built from your modules

The lecture's "PyTorch-ified" net: five hidden layers of 100, each Linear (no bias) + BatchNorm1d +
Tanh, then Linear + BatchNorm1d for the 27 logits, the last gain times 0.1. Its step-0 loss is close
to the ideal 3.2958. (The lecture prints 3.2870; your BatchNorm1d divides the batch variance by N
where the lecture's class divides by N - 1, so yours differs a little.)""", '''\
C, layers, g = build_deep_net()
print(f"{sum(p.nelement() for p in deep_parameters(C, layers)):,} parameters (the lecture: 47,024)")
Xb, Yb = first_batch(g)
logits = deep_forward(C, layers, Xb)
print(f"step-0 loss {F.cross_entropy(logits, Yb).item():.4f} (the lecture: 3.2870)")
for i, layer in enumerate(layers):
    print(f"  layer {i:2d} {type(layer).__name__:<12} out {tuple(layer.out.shape)}")
C0, layers0, _ = build_deep_net(batchnorm=False)
print(f"without batch norm (Linear with bias, + Tanh): {sum(p.nelement() for p in deep_parameters(C0, layers0)):,} "
      "parameters (the lecture: 46,497)")
'''),
    Experiment("bias", "bias_redundancy", ("modules", "bias_redundancy"), """\
### Experiment: the biases before each BatchNorm1d do nothing

The same net with `bias=True`: batch norm subtracts each feature's batch mean, and with it the bias,
so the bias's gradient is zero (up to float rounding). Your `drop_redundant_biases` removes them.""", '''\
C, layers, g = build_deep_net(bias=True)
n = sum(p.nelement() for p in deep_parameters(C, layers))
print(f"with every bias: {n:,} parameters (the lecture's net with bias=True: 47,551)")
print(f"redundant_biases(layers) = {redundant_biases(layers)} (the lecture: [0, 3, 6, 9, 12, 15])")
Xb, Yb = first_batch(g)
F.cross_entropy(deep_forward(C, layers, Xb), Yb).backward()
for i in redundant_biases(layers):
    print(f"  layer {i:2d}: bias grad at most {layers[i].bias.grad.abs().max().item():.1e}, "
          f"weight grad std {layers[i].weight.grad.std().item():.1e}")
removed = drop_redundant_biases(layers)
print(f"drop_redundant_biases(layers) removed {removed} scalars: {n - removed:,} parameters (the lecture: 47,024)")
'''),
    Experiment("diagnostics", "diagnostics", ("no_grad", "modules", "diagnostics"), """\
### Experiment: viz #1 to #3, the activations and gradients of the deep net

First, the lecture's look at the net *without* batch norm at init: with gain 1 the tanh outputs
shrink layer by layer, with 3 they saturate, 5/3 keeps them steady. Then the net with batch norm
trained for the lecture notebook's 1,001 steps: each tanh layer's outputs (viz #1, |t| > 0.97
counts as saturated), the gradients at those outputs (viz #2), and the weights' gradients with your
`grad_to_data_ratio` (viz #3), beside the numbers the lecture prints.""", '''\
fig, axes = plt.subplots(1, 3, figsize=(20, 4), sharey=True)
for ax, weight_gain in zip(axes, (1.0, 5 / 3, 3.0)):
    C, layers, g = build_deep_net(batchnorm=False, weight_gain=weight_gain)
    with torch.no_grad():
        deep_forward(C, layers, first_batch(g)[0])
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, Tanh):
            s = activation_stats(layer.out)
            hy, hx = torch.histogram(layer.out, density=True)
            ax.plot(hx[:-1], hy, label=f"layer {i}: std {s['std']:.2f}, saturated {s['saturated']:.1%}")
    ax.legend(fontsize=8); ax.set_title(f"no batch norm, gain {weight_gain:.3g}, at init")
plt.show()

C, layers, g = build_deep_net()
lossi, _ = train_deep_net(C, layers, g, steps=1001)
tanh_layers = [i for i, layer in enumerate(layers[:-1]) if isinstance(layer, Tanh)]

plt.figure(figsize=(20, 4))
for k, i in enumerate(tanh_layers):
    t = layers[i].out.detach()
    s = activation_stats(t)
    _, mean, std, saturated, _ = DEEP_NET["tanh"][k]
    print(f"layer {i:2d} (Tanh): mean {s['mean']:+.2f}, std {s['std']:.2f}, saturated {s['saturated']:.2%}"
          f"   the lecture: {mean:+.2f}, {std:.2f}, {saturated:.2%}")
    hy, hx = torch.histogram(t, density=True)
    plt.plot(hx[:-1], hy, label=f"layer {i} (Tanh)")
plt.legend(); plt.title("viz #1: activation distribution after 1,001 steps"); plt.show()

plt.figure(figsize=(20, 4))
for k, i in enumerate(tanh_layers):
    t = layers[i].out.grad
    print(f"layer {i:2d} (Tanh): grad mean {t.mean().item():+.2e}, std {t.std().item():.2e}"
          f"   the lecture: std {DEEP_NET['tanh'][k][4]:.2e}")
    hy, hx = torch.histogram(t, density=True)
    plt.plot(hx[:-1], hy, label=f"layer {i} (Tanh)")
plt.legend(); plt.title("viz #2: gradient distribution at the tanh outputs"); plt.show()

plt.figure(figsize=(20, 4))
weights = [p for p in deep_parameters(C, layers) if p.ndim == 2]
for (shape, grad_std, ratio), p in zip(DEEP_NET["weights"], weights):
    print(f"weight {str(tuple(p.shape)):>10}: grad std {p.grad.std().item():.2e}, grad:data "
          f"{grad_to_data_ratio(p.detach(), p.grad):.2e}   the lecture: {grad_std:.2e}, {ratio:.2e}")
    hy, hx = torch.histogram(p.grad, density=True)
    plt.plot(hx[:-1], hy, label=f"{tuple(p.shape)}")
plt.legend(); plt.title("viz #3: weight gradient distribution"); plt.show()

set_training(layers, False)  # evaluate with the running statistics
forward = lambda X: deep_forward(C, layers, X)
print(f"after 1,001 steps: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f} "
      f"(the lecture: {DEEP_NET['train']}, {DEEP_NET['val']})")
'''),
    Experiment("update_ratio", "update_ratio", ("modules", "update_ratio"), """\
### Experiment: viz #4, the update:data ratio

The same 1,001 steps again, now logging your `update_ratios` after every update: log10 of how big
each step's change is next to the weight's own spread, one line per weight. The lecture's guide is
-3 (updates about 1/1000 of the values); far below, the net learns too slowly; far above, too fast.""", '''\
C, layers, g = build_deep_net()
_, ud = train_deep_net(C, layers, g, steps=1001, record=update_ratios)
ud = torch.tensor(ud)  # (1001 steps, one column per 2-D parameter)
plt.figure(figsize=(20, 4))
named = [(i, p) for i, p in enumerate(deep_parameters(C, layers)) if p.ndim == 2]
for k, (i, p) in enumerate(named):
    plt.plot(ud[:, k], label=f"param {i} {tuple(p.shape)}")
plt.plot([0, len(ud)], [-3, -3], "k", label="-3: updates about 1/1000 of the data")
plt.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0)); plt.title("viz #4: update:data ratio (log10) over training")
plt.show()
print("mean of the last 100 steps: " + ", ".join(f"{tuple(p.shape)} {v:+.2f}"
                                                 for (_, p), v in zip(named, ud[-100:].mean(0).tolist())))
'''),
    Experiment("zero_init", "zero_init", ("no_grad", "zero_init"), """\
### Experiment: exercise E01, every parameter starts at zero

With every weight and bias zero, h = tanh(0) = 0, so only b2 gets a gradient, and W2 stays 0, so
nothing before it ever moves. The net can only learn the best constant prediction, and its loss
falls to the entropy of the targets (your `unigram_loss`) and no further. 3,000 steps here, at the
lecture's lr 0.1.""", '''\
floor = unigram_loss(Ytr)
print(f"unigram_loss(Ytr) = {floor:.4f}, unigram_loss(Ydev) = {unigram_loss(Ydev):.4f} "
      f"(measured: {facts.UNIGRAM_LOSS['train']}, {facts.UNIGRAM_LOSS['val']})")
parameters, g = draw_mlp()
Xb, Yb = first_batch(g)
grads = zero_init_grads(Xb, Yb)
for name, grad in grads.items():
    print(f"  d loss / d {name:<2}: shape {tuple(grad.shape)}, largest |entry| {grad.abs().max().item():.4f}")
expected_b2 = 1 / vocab_size - torch.bincount(Yb, minlength=vocab_size) / len(Yb)
print(f"b2's gradient is 1/27 - (count of each target) / 32: {torch.allclose(grads['b2'], expected_b2)}")

steps = 3_000
parameters = [torch.zeros_like(p) for p in parameters]
_, g = draw_mlp()
lossi = train_mlp(parameters, g, steps)
moved = [name for name, p in zip(("C", "W1", "b1", "W2", "b2"), parameters) if p.abs().max() > 0]
forward = lambda X: mlp_forward(X, *parameters)[2]
print(f"after {steps:,} steps: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f}; "
      f"moved: {moved} (measured after 30,000 steps: 2.8230 / 2.8214, only b2)")
plt.figure(figsize=(12, 4))
plt.plot(torch.tensor(lossi).view(-1, 100).mean(1), label="all-zero init, mean of 100 steps")
plt.axhline(torch.tensor(floor).log10().item(), color="k", ls="--", label=f"unigram_loss(Ytr) = {floor:.4f}")
plt.xlabel("step / 100"); plt.ylabel("log10 loss"); plt.legend(); plt.title("the all-zero MLP trains down to the unigram floor")
plt.show()
'''),
    Experiment("fold", "fold_batchnorm", ("no_grad", "modules", "fold_batchnorm"), """\
### Experiment: exercise E02, fold each BatchNorm1d into the Linear before it

In eval mode batch norm is a fixed affine map per feature, so each Linear + BatchNorm1d pair becomes
one matmul and a bias. The deep net is trained briefly (300 steps, for running statistics that are
not the initial zeros and ones), then folded with your `fold_batchnorm`: the folded net, without a
single BatchNorm1d, gives the same logits.""", '''\
C, layers, g = build_deep_net()
train_deep_net(C, layers, g, steps=300)
set_training(layers, False)
folded = []
for layer, following in zip(layers, layers[1:] + [None]):
    if isinstance(layer, BatchNorm1d):
        continue  # folded into the Linear before it
    if isinstance(layer, Linear) and isinstance(following, BatchNorm1d):
        with torch.no_grad():
            W, b = fold_batchnorm(layer.weight, layer.bias, following.running_mean.reshape(-1),
                                  following.running_var.reshape(-1), following.gamma, following.beta, following.eps)
        folded.append(lambda x, W=W, b=b: x @ W + b)
    else:
        folded.append(layer)
with torch.no_grad():
    original, merged = deep_forward(C, layers, Xdev), deep_forward(C, folded, Xdev)
print(f"{len(layers)} layers -> {len(folded)}: every BatchNorm1d folded into the Linear before it")
# float32 rounds the folded and the unfolded arithmetic differently: about 1e-6 of each logit's size
print(f"largest logit difference on {len(Xdev):,} val examples: {(original - merged).abs().max().item():.1e}; "
      f"torch.allclose(rtol=1e-4, atol=1e-5): {torch.allclose(original, merged, rtol=1e-4, atol=1e-5)}")
print(f"val loss: with BatchNorm1d (eval) {split_loss(lambda X: deep_forward(C, layers, X), Xdev, Ydev):.6f}, "
      f"folded {split_loss(lambda X: deep_forward(C, folded, X), Xdev, Ydev):.6f}")
'''),
)

OUTRO = """\
## Where next

`python grader.py` prints the scorecard of your exercises/ files; `python -m kata lecture` trains the
lecture's five MLP stages for the full 200,000 steps and its deep net with your code (copy your cells
into exercises/ first: it imports from there), and prints the lecture's numbers beside yours."""


# ---------------------------------------------------------------------------------------------
# the notebook as JSON


def _cell(cell_type: str, cell_id: str, source: str, **kata) -> dict:
    """One cell; `kata` metadata (kind, topic, ...) lets the tests find check and experiment cells."""
    lines = source.rstrip("\n").splitlines(keepends=True)
    cell = {"cell_type": cell_type, "id": cell_id, "metadata": {"kata": kata} if kata else {}, "source": lines}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def experiment_code(e: Experiment) -> str:
    needs = sorted(e.needs, key=topics.NAMES.index)
    return f"if ready({', '.join(map(json.dumps, needs))}):\n" + textwrap.indent(e.code, "    ")


def cells(solutions: Path = BUILTIN["solutions"], reference: bool = False) -> list[dict]:
    """Every cell, in order: set-up, data, the MLP, then per topic spec, code, check and experiment."""
    out = [_cell("markdown", "intro", INTRO), _cell("code", "setup", SETUP),
           _cell("markdown", "data-intro", "## The data\n\nThe lecture's names, split 80/10/10 after "
                 "`random.seed(42)`, with contexts of 3 characters."),
           _cell("code", "data", DATA), _cell("code", "mlp", MLP)]
    for topic in topics.NAMES:
        solution = (solutions / f"{topic}.py").read_text(encoding="utf-8")
        out += [_cell("markdown", f"{topic}-spec", spec_markdown(topic, solution)),
                _cell("code", f"{topic}-code", topic_code(topic, solution, reference), kind="topic", topic=topic),
                _cell("code", f"{topic}-check", check_call(topic), kind="check", topic=topic)]
        if topic == "modules":
            out.append(_cell("code", "deep-net-defs", DEEP_NET))
        for e in EXPERIMENTS:
            if e.after == topic:
                out += [_cell("markdown", f"{e.id}-intro", e.intro),
                        _cell("code", f"{e.id}-run", experiment_code(e), kind="experiment", id=e.id,
                              needs=list(e.needs))]
    return out + [_cell("markdown", "outro", OUTRO)]


def render(solutions: Path = BUILTIN["solutions"], reference: bool = False) -> str:
    """The notebook file's text: nbformat 4.5, no outputs, keys sorted and indent 1 as Jupyter writes."""
    notebook = {
        "cells": cells(solutions, reference),
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path | None = None, reference: bool = False, solutions: Path = BUILTIN["solutions"]) -> Path:
    """Write the notebook (default notebooks/workbook.ipynb, the stub version) and return its path."""
    path = Path(path or NOTEBOOK)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(solutions, reference), encoding="utf-8")
    return path


def drift(path: Path | None = None, solutions: Path = BUILTIN["solutions"]) -> bool:
    """True when the notebook at `path` (default notebooks/workbook.ipynb) is not what would be
    generated from `solutions`."""
    path = Path(path or NOTEBOOK)
    return not path.is_file() or path.read_text(encoding="utf-8") != render(solutions)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kata.workbook", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the notebook differs from what would be written")
    p.add_argument("--reference", type=Path, metavar="PATH", help="write the reference version (solution bodies) here")
    args = p.parse_args(argv)
    if args.check:
        if drift():
            print(f"{show_path(NOTEBOOK)} is out of date with solutions/: run python -m kata.workbook")
            return 1
        print(f"{show_path(NOTEBOOK)} is up to date")
        return 0
    path = write(args.reference, reference=True) if args.reference else write()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
