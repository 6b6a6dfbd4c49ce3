"""The implementation loader and the exercise generator."""
import shutil
import textwrap
from pathlib import Path

import pytest

from kata import generate, topics
from kata.catalog import run_tests
from kata.loader import BUILTIN, ROOT, Implementation, ImplNotFound, LearnerImportError, resolve


@pytest.fixture
def tree(tmp_path):
    """A copy of solutions/ that a test may break."""
    return Path(shutil.copytree(BUILTIN["solutions"], tmp_path / "impl"))


def test_resolve_names_the_builtin_trees_and_rejects_a_missing_folder(tmp_path):
    assert resolve("solutions") == BUILTIN["solutions"].resolve()
    assert resolve("exercises") == BUILTIN["exercises"].resolve()
    with pytest.raises(ImplNotFound, match="not found"):
        resolve(tmp_path / "nowhere")


def test_load_allows_relative_imports_between_topic_files(tree):
    module = Implementation(tree).load("bias_redundancy")  # does `from .modules import Linear`
    assert module.Linear.__module__.endswith(".modules")


def test_load_reads_the_source_afresh_and_writes_no_bytecode(tree):
    path = tree / "initial_loss.py"
    assert Implementation(tree).load("initial_loss").expected_initial_loss(27) == pytest.approx(3.2958, abs=1e-4)
    path.write_text(path.read_text() + "\n\ndef expected_initial_loss(vocab_size):\n    return 42.0\n")
    assert Implementation(tree).load("initial_loss").expected_initial_loss(27) == 42.0
    assert not (tree / "__pycache__").exists(), "loading wrote __pycache__ into the implementation folder"


@pytest.mark.parametrize("body, expected", [
    ("def f(:\n", r"initial_loss.py:1: syntax error"),
    ("import sys\nsys.exit(0)\n", r"initial_loss.py:2 raised SystemExit"),
    ("raise KeyboardInterrupt\n", r"raised KeyboardInterrupt"),
    ("import pytest\npytest.skip('nope')\n", r"raised Skipped"),
    ("1 / 0\n", r"raised ZeroDivisionError"),
])
def test_load_turns_any_import_failure_into_one_learner_import_error(tree, body, expected):
    (tree / "initial_loss.py").write_text(body)
    with pytest.raises(LearnerImportError, match=expected):
        Implementation(tree).load("initial_loss")


def test_learner_escapes_inside_a_test_count_as_failures_and_the_session_goes_on(tmp_path):
    """sys.exit, KeyboardInterrupt and pytest.skip from learner code fail the test; nothing is skipped."""
    bodies = {
        "exits": "import sys\n    sys.exit(0)",
        "interrupts": "raise KeyboardInterrupt",
        "skips": "import pytest\n    pytest.skip('later')",
    }
    dirs = []
    for name, body in bodies.items():
        folder = Path(shutil.copytree(BUILTIN["solutions"], tmp_path / name))
        (folder / "batchnorm.py").write_text(f"def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    {body}\n")
        dirs.append(folder)
    verdicts = run_tests([ROOT / "tests" / "test_batchnorm.py"], dirs, tmp_path)
    for name, verdict in verdicts.items():
        assert verdict.passed == 0 and verdict.failed, f"{name}: {verdict.passed} passed, {len(verdict.failed)} failed"
        assert "the code under test" in verdict.text(), f"{name}: the failure does not say what the code did"
    assert len({len(v.failed) for v in verdicts.values()}) == 1, "a session stopped early for one of them"


def test_stub_source_replaces_each_block_with_a_raise_that_names_topic_and_hint():
    solution = textwrap.dedent('''\
        """Doc."""
        import torch


        def f(x):
            """Docstring stays."""
            # BEGIN SOLUTION
            return x + 1
            # END SOLUTION


        class K:
            def m(self):
                # BEGIN SOLUTION
                return 1
                # END SOLUTION
        ''')
    stub = generate.stub_source(solution, "demo")
    assert '"""Docstring stays."""' in stub and "return x + 1" not in stub and "return 1" not in stub
    assert 'raise NotImplementedError("demo: f is yours to write (hint: python grader.py --hint demo)")' in stub
    assert "demo: K.m is yours to write" in stub
    compile(stub, "stub.py", "exec")


@pytest.mark.parametrize("broken", ["# BEGIN SOLUTION\n", "# END SOLUTION\n",
                                    "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n"])
def test_stub_source_rejects_unbalanced_markers(broken):
    with pytest.raises(ValueError):
        generate.stub_source("def f():\n    " + broken.replace("\n", "\n    "), "demo")


@pytest.mark.parametrize("topic", topics.NAMES)
def test_every_solution_has_a_block_for_the_learner(topic):
    source = (BUILTIN["solutions"] / f"{topic}.py").read_text()
    assert generate.BEGIN in source and generate.stub_source(source, topic) != source
