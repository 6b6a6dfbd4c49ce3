"""Checks of the kata itself (not of a learner): the stubs fail every topic test, every catalogued
mistake is caught and, graded alone, named as itself, exercises/ is what the generator writes, and
both trees meet the contract.

Run with the rest: KATA_IMPL=solutions pytest tests meta
"""
import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kata import catalog, generate, topics
from kata.loader import ROOT

# The catalog runs in two pytest processes over all the mutants, each failure diagnosed by replay:
# about 5 minutes of CPU on 2 cores with an empty .kata/ cache.
pytestmark = pytest.mark.timeout(1200)

CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "check_contract.py"
MIN_TESTS_PER_TOPIC, MIN_TESTS = 6, 80
MIN_MISTAKES_PER_TOPIC = 4
MIN_MISTAKES, MIN_COMBINATIONS = 200, 30
# The mistakes a learner makes most often: each must be catalogued (the grader names a failure by
# the catalogued mistake it behaves like, so a catalogued mistake is one the learner is told about).
MUST_CATALOGUE = {
    "batchnorm": ["unbiased_variance", "eps_outside_sqrt"],
    "running_stats": ["momentum_swapped", "eps_outside_sqrt"],
    "modules": ["unbiased_variance", "eps_outside_sqrt", "momentum_swapped", "fan_out"],
    "kaiming": ["fan_out", "global_rng_used"],
    "no_grad": ["grad_mode_changed"],
    "saturation": ["tanh_applied_twice", "no_abs", "greater_or_equal"],
    "diagnostics": ["no_abs", "biased_std"],
    "fold_batchnorm": ["eps_outside_sqrt"],
    "update_ratio": ["in_place"],
    "zero_init": ["zero_log_zero", "w2_small_not_zero", "default_dtype_changed"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The module's three pytest subprocesses, two at a time on two cores: the mistake catalog in
    two halves, and the untouched stubs with the Liar objects in one run."""
    def catalog_half(names):
        return catalog.check_topics(names, tmp_path_factory.mktemp("catalog"))

    def stubs_and_liars():
        work = tmp_path_factory.mktemp("whole")
        generate.generate(work / "stubs")
        _write_liars(work / "liars")
        return catalog.run_tests([ROOT / "tests"], [work / "stubs", work / "liars"], work)

    with ThreadPoolExecutor(max_workers=2) as pool:
        halves = [pool.submit(catalog_half, half) for half in _halves(topics.NAMES)]
        whole = pool.submit(stubs_and_liars)
        mistakes = {topic: v for half in halves for topic, v in half.result().items()}
        return {"mistakes": mistakes, **whole.result()}


def _halves(names) -> list[list[str]]:
    """Two groups of topics with about equal work (mistakes x size of the test file)."""
    weight = {t: len(topics.mistakes(t)) * (ROOT / "tests" / f"test_{t}.py").stat().st_size for t in names}
    groups: list[list[str]] = [[], []]
    for topic in sorted(names, key=weight.get, reverse=True):
        min(groups, key=lambda g: sum(weight[t] for t in g)).append(topic)
    return groups


@pytest.fixture(scope="module")
def stub_verdict(runs):
    return runs["stubs"]


@pytest.fixture(scope="module")
def mistake_verdicts(runs):
    return runs["mistakes"]


def test_exercises_are_what_the_generator_writes():
    stale = generate.drift()
    assert not stale, (f"exercises/ differs from the stubs generated from solutions/ for {stale}: "
                       "run `python -m kata generate` after editing solutions/")


@pytest.mark.skipif(not CONTRACT_CHECK.is_file(), reason="../shared/tools/check_contract.py is not beside this clone")
def test_both_trees_meet_the_contract():
    done = subprocess.run([sys.executable, str(CONTRACT_CHECK), "exercises", "solutions"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "contract: 0 problem" in done.stdout, done.stdout + done.stderr


def test_stubs_fail_every_topic_test(stub_verdict):
    assert stub_verdict.passed == 0, f"{stub_verdict.passed} topic tests pass on the untouched stubs"
    assert stub_verdict.failed, "no topic test ran against the stubs"


def test_every_topic_has_enough_tests(stub_verdict):
    counts = {t: 0 for t in topics.NAMES}
    for record in stub_verdict.failed:
        counts[record.topic] += 1
    thin = {t: n for t, n in counts.items() if n < MIN_TESTS_PER_TOPIC}
    assert not thin, f"topics with fewer than {MIN_TESTS_PER_TOPIC} tests: {thin}"
    assert sum(counts.values()) >= MIN_TESTS, f"{sum(counts.values())} topic tests, expected at least {MIN_TESTS}"


@pytest.mark.parametrize("topic", topics.NAMES)
def test_topic_tests_carry_the_topic_marker_and_property_names(topic):
    """`pytest -m <topic>` selects exactly the topic; tests are named test_<function>_<invariant>."""
    path = ROOT / "tests" / f"test_{topic}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    marks = [ast.unparse(n.value) for n in tree.body
             if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)]
    assert marks == [f"pytest.mark.{topic}"], f"{path.name}: pytestmark is {marks}, expected pytest.mark.{topic}"
    public = _public_names(topic)
    tests = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    badly_named = [t for t in tests if not any(t.startswith(f"test_{p}_") for p in public)]
    assert not badly_named, f"{path.name}: name tests test_<function>_<invariant> with one of {public}: {badly_named}"


def _public_names(topic: str) -> list:
    tree = ast.parse((ROOT / "solutions" / f"{topic}.py").read_text(encoding="utf-8"))
    return [n.name.lower() for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
            and not n.name.startswith("_")]


@pytest.mark.parametrize("topic", topics.NAMES)
def test_topic_has_hints_and_a_mistake_catalog(topic):
    assert len(topics.hints(topic)) >= 3, f"{topic}: needs at least 3 hint levels (concept, formula, near-solution)"
    assert len(topics.mistakes(topic)) >= MIN_MISTAKES_PER_TOPIC, f"{topic}: fewer than 4 catalogued mistakes"
    found = topics.catalogue(topic)
    assert len({m.id for m in found}) == len(found), f"{topic}: mistake ids repeat"
    source = (ROOT / "solutions" / f"{topic}.py").read_text(encoding="utf-8")
    for mistake in found:
        assert catalog.apply(mistake, source) != source


@pytest.mark.parametrize("topic", topics.NAMES)
def test_every_catalogued_mistake_is_caught_by_its_topic_tests(topic, mistake_verdicts):
    verdicts = mistake_verdicts[topic]
    missed = [mistake_id for mistake_id, verdict in verdicts.items() if not verdict.failed]
    assert not missed, f"{topic}: these wrong implementations pass every test: {missed}"


@pytest.mark.parametrize("topic", topics.NAMES)
def test_every_catalogued_mistake_graded_alone_is_named_as_itself_in_one_block(topic, mistake_verdicts):
    """The diagnosis (kata/diagnose.py) names each single mistake as itself and nothing else (or as
    "one of" it and an entry declared the same), with no failure left unexplained; a combination as
    exactly its two parts. `python -m kata.catalog` prints the same table."""
    rows = [catalog.self_diagnosis(topic, next(m for m in topics.catalogue(topic) if m.id == i), verdict)
            for i, verdict in mistake_verdicts[topic].items()]
    bad = [row.line() for row in rows if not row.ok]
    assert not bad, "\n".join(bad)


def test_the_common_mistakes_are_catalogued():
    for topic, ids in MUST_CATALOGUE.items():
        missing = set(ids) - {m.id for m in topics.mistakes(topic)}
        assert not missing, f"{topic}: {sorted(missing)} must be catalogued"


def test_the_catalog_is_wide_and_lists_combinations():
    singles = sum(len(topics.mistakes(t)) for t in topics.NAMES)
    pairs = [m for t in topics.NAMES for m in topics.combinations(t)]
    assert singles >= MIN_MISTAKES, f"{singles} single mistakes catalogued, expected at least {MIN_MISTAKES}"
    assert len(pairs) >= MIN_COMBINATIONS, f"{len(pairs)} combinations catalogued, expected at least {MIN_COMBINATIONS}"
    # two mistakes in one function, one expression apart: the issue's own example
    assert any(m.topic == "batchnorm" and set(m.combines) == {"unbiased_variance", "eps_outside_sqrt"} for m in pairs)


def test_topic_notes_exist_for_every_topic():
    missing = [t for t in topics.NAMES if not topics.notes(t).strip()]
    assert not missing, f"kata/notes/<topic>.md missing for {missing}"


LIAR = '''
class Liar:
    """Claims to equal anything, is truthy, and turns every operation into another Liar."""
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self): return True
    def __hash__(self): return 0
    def __len__(self): return 2
    def __iter__(self): return iter([Liar(), Liar()])
    def __getattr__(self, name): return Liar()
    def __call__(self, *args, **kwargs): return Liar()
    def __getitem__(self, key): return Liar()
    def __repr__(self): return "Liar()"
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __call__
    __abs__ = __neg__ = __pow__ = __matmul__ = __rmatmul__ = __call__
'''


def _liar_module(topic: str) -> str:
    """The topic's contract surface, every function and method returning a Liar."""
    tree = ast.parse((ROOT / "solutions" / f"{topic}.py").read_text(encoding="utf-8"))
    lines = [LIAR]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            lines.append(f"def {node.name}(*args, **kwargs):\n    return Liar()\n")
        elif isinstance(node, ast.ClassDef):
            lines.append(f"class {node.name}(Liar):\n    def __init__(self, *args, **kwargs):\n        pass\n")
    return "\n".join(lines)


def _write_liars(folder: Path) -> None:
    folder.mkdir()
    for topic in topics.NAMES:
        (folder / f"{topic}.py").write_text(_liar_module(topic), encoding="utf-8")


def test_an_object_that_claims_to_equal_anything_passes_no_topic_test(runs):
    verdict = runs["liars"]
    assert verdict.failed and verdict.passed == 0, f"{verdict.passed} topic tests pass for objects that equal anything"
