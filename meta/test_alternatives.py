"""The topic tests accept correct code that is not the reference.

meta/alternatives/ holds three more correct implementations of all twelve topics, written from
CONTRACT.md and the exercise docstrings without looking at solutions/:
  plain/  the way a careful learner writes it straight from the lecture (x.var(0, unbiased=False),
          ((x - m)**2).mean(0), `with torch.no_grad():`, new tensors for the running buffers);
  terse/  other library calls and orders (var_mean in float64 then cast back, rsqrt, addcmul,
          lerp, einsum, in-place buffer updates, normal_ instead of randn, amin instead of all,
          torch.func.grad);
  module/ Linear, BatchNorm1d and Tanh as torch.nn.Module subclasses (nn.Parameter weights,
          registered buffers, forward()), and numpy floats where the contract says float.
A test that rejects either is too strict: it tests the reference's way, not the contract.
"""
import subprocess
import sys

import pytest

from kata import catalog
from kata.loader import ROOT

ALTERNATIVES = ROOT / "meta" / "alternatives"
TREES = ["plain", "terse", "module"]
CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "check_contract.py"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Both trees through every topic test, in one pytest process (KATA_SEED as set)."""
    return catalog.run_tests([ROOT / "tests"], [ALTERNATIVES / t for t in TREES], tmp_path_factory.mktemp("alt"))


@pytest.mark.parametrize("tree", TREES)
def test_topic_tests_pass_on_other_correct_implementations(tree, verdicts):
    verdict = verdicts[tree]
    failures = "\n".join(f"{r.id}: {r.text[:600]}" for r in verdict.failed)
    assert not verdict.failed, f"meta/alternatives/{tree} is correct but fails:\n{failures}"
    assert verdict.passed >= 80, f"only {verdict.passed} topic tests ran on meta/alternatives/{tree}"


@pytest.mark.skipif(not CONTRACT_CHECK.is_file(), reason="../shared/tools/check_contract.py is not beside this clone")
def test_alternative_trees_meet_the_contract():
    trees = [str(ALTERNATIVES / t) for t in TREES]
    done = subprocess.run([sys.executable, str(CONTRACT_CHECK), *trees], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "0 problem" in done.stdout, done.stdout + done.stderr
