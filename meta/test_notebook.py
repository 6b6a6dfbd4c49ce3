"""The learner's loop outside a kernel: where hint progress is kept, the hint's next step spelled
for where it is read, and a learner's exception message shown as the learner's code raised it.
(check() in a real kernel: meta/test_workbook.py.)"""
from __future__ import annotations

import math
import types

import pytest

from kata import hintstate, readiness, remote, topics
from kata.loader import ROOT, Implementation


def test_state_dir_is_the_clones_root_then_the_working_directory_never_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("KATA_STATE", raising=False)
    assert hintstate.state_dir() == hintstate.ROOT / ".kata", "in a clone, .kata/ at its root (the CLI's too)"
    installed = tmp_path / "site-packages"  # a wheel's root: grader.py beside kata/, no exercises/
    (installed / "kata").mkdir(parents=True)
    (installed / "grader.py").write_text("")
    monkeypatch.setattr(hintstate, "ROOT", installed)
    monkeypatch.setitem(hintstate.BUILTIN, "exercises", installed / "exercises")
    work = tmp_path / "colab"
    work.mkdir()
    monkeypatch.chdir(work)
    assert hintstate.state_dir() == work / ".kata"
    monkeypatch.setenv("KATA_STATE", str(tmp_path / "elsewhere"))
    assert hintstate.state_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize("where, shown, not_shown", [
    ("cli", "python grader.py --hint batchnorm again", 'hint("batchnorm")'),
    ("notebook", 'hint("batchnorm") again for the next level; hint("batchnorm", level=N) shows level N', "grader.py"),
])
def test_hint_footer_shows_only_the_form_that_fits(where, shown, not_shown, tmp_path, monkeypatch):
    monkeypatch.setenv("KATA_STATE", str(tmp_path))
    footer = hintstate.hint_text("batchnorm", 1, where)[-1]
    assert shown in footer and not_shown not in footer, footer
    last = hintstate.hint_text("batchnorm", len(hintstate.topics.hints("batchnorm")), where)[-1]
    assert hintstate.ask(where, "explain", "batchnorm") in last and not_shown not in last, last


@pytest.mark.parametrize("base, message", [("KeyError", "'selu'"), ("ValueError", "bad 'conv2d'"),
                                           ("KeyError", "")])
def test_learner_exception_message_is_the_learners_text_quoted_once(base, message):
    error = remote.learner_exception({"base": base, "type": base, "message": message})
    assert isinstance(error, {"KeyError": KeyError, "ValueError": ValueError}[base])
    assert str(error) == message, f"str() of the learner's {base}({message!r}) gave {str(error)!r}"


@pytest.mark.parametrize("tree", ["solutions", "meta/alternatives/plain", "meta/alternatives/terse",
                                  "meta/alternatives/module"])
def test_readiness_accepts_every_correct_implementation(tree):
    """The quick checks (kata/readiness.py) hold for the reference and the three independent trees."""
    impl = Implementation(tree if tree == "solutions" else ROOT / tree)
    for topic in readiness.CHECKS:
        used = [impl.load(t) for t in (*topics.get(topic).uses, topic)]  # as the workbook's namespace has them
        code = types.SimpleNamespace(**{k: v for m in used for k, v in vars(m).items() if not k.startswith("_")})
        assert readiness.problem(topic, code) is None, (tree, topic)


def test_readiness_calls_in_grad_mode_as_a_notebook_cell_would():
    """A zero_init_grads that backpropagates without torch.enable_grad() works in a notebook, so
    it is ready."""
    import torch
    import torch.nn.functional as F

    def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
        params = {"C": torch.zeros(vocab_size, n_embd), "W1": torch.zeros(X.shape[1] * n_embd, n_hidden),
                  "b1": torch.zeros(n_hidden), "W2": torch.zeros(n_hidden, vocab_size), "b2": torch.zeros(vocab_size)}
        for p in params.values():
            p.requires_grad = True
        h = torch.tanh(params["C"][X].view(X.shape[0], -1) @ params["W1"] + params["b1"])
        F.cross_entropy(h @ params["W2"] + params["b2"], Y).backward()
        return {k: p.grad for k, p in params.items()}

    entropy = lambda Y, vocab_size=27: -sum(p * math.log(p) for p in torch.bincount(Y).float().div(len(Y)).tolist() if p)
    code = types.SimpleNamespace(zero_init_grads=zero_init_grads, unigram_loss=entropy)
    assert readiness.problem("zero_init", code) is None


def test_readiness_finds_every_stub_not_started():
    impl = Implementation("exercises")
    for topic, checks in readiness.CHECKS.items():
        assert readiness.problem(topic, impl.load(topic)) == (next(iter(checks)), "todo"), topic
