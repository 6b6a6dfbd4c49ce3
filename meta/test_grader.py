"""The grader's own tests: learner code that misbehaves, the JSON, exit codes, reset, hints, check().

Each misbehaving implementation is solutions/ copied to a temporary folder with batchnorm.py
broken one way (batchnorm is the topic whose tests exist from the start). The grading engine is
driven in-process (its workers fork from this process, which already has torch), and the command
line is run as a subprocess where the process boundary is the point. Runs are shared per module.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grader
from kata import grading, topics
from kata.loader import BUILTIN, ROOT

pytestmark = pytest.mark.timeout(300)  # module fixtures grade many times; each test body is fast

BROKEN = "batchnorm"
WITH_TESTS = [t for t in topics.NAMES if grading.test_file(t).is_file()]
OTHERS = [t for t in WITH_TESTS if t != BROKEN][:1]  # graded after the broken topic, same worker
ALONGSIDE = {"syntax_error", "os_exit", "keyboard_interrupt"}  # cases that could take other topics down

# Each case redefines batchnorm_forward at the end of the reference, so only its behaviour changes.
CASES = {
    "syntax_error": "def batchnorm_forward(x, gamma, beta, eps=1e-5:\n    return x\n",
    "infinite_loop": (  # the first call never returns; later calls are correct, so one test times out
        "_reference, _calls = batchnorm_forward, []\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
        "    _calls.append(1)\n"
        "    while len(_calls) == 1:\n"
        "        pass\n"
        "    return _reference(x, gamma, beta, eps)\n"),
    "sys_exit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import sys\n    sys.exit(0)\n",
    "os_exit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import os\n    os._exit(0)\n",
    "raise_systemexit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    raise SystemExit\n",
    "keyboard_interrupt": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    raise KeyboardInterrupt\n",
    "pytest_skip": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import pytest\n"
                    "    pytest.skip('looks done to me')\n"),
    "equals_anything": (
        "class _Anything:\n"
        "    def __eq__(self, other):\n        return True\n"
        "    def __ne__(self, other):\n        return False\n"
        "    def __getattr__(self, name):\n        return lambda *a, **k: self\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return _Anything()\n"),
    "imports_solutions": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                          "    from solutions.batchnorm import batchnorm_forward as reference\n"
                          "    return reference(x, gamma, beta, eps)\n"),
}


def broken_impl(folder: Path, case: str) -> Path:
    shutil.copytree(BUILTIN["solutions"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = folder / f"{BROKEN}.py"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + CASES[case], encoding="utf-8")
    return folder


def checksums(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args, state=None, env=None):
    environment = {k: v for k, v in os.environ.items() if k not in ("KATA_IMPL", "KATA_STATE")}
    environment.update(env or {})
    if state:
        environment["KATA_STATE"] = str(state)
    return subprocess.run([sys.executable, str(ROOT / "grader.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=environment, timeout=240)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every case graded once: {case: {topic: TopicResult}}."""
    grading.warm()
    out = {}
    for case in CASES:
        impl = broken_impl(tmp_path_factory.mktemp(case) / "impl", case)
        timeout = 1 if case == "infinite_loop" else 5
        chosen = [BROKEN, *OTHERS] if case in ALONGSIDE else [BROKEN]
        out[case] = grading.grade(chosen, impl, timeout=timeout, workers=1)
    return out


def failing_texts(result) -> str:
    return "\n".join(t.text for t in result.tests if not t.passed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_misbehaving_case_fails_its_topic_and_keeps_the_others(graded, case):
    results = graded[case]
    assert set(results) == ({BROKEN, *OTHERS} if case in ALONGSIDE else {BROKEN}), "a topic was dropped"
    broken = results[BROKEN]
    assert not broken.passed and broken.score == 0, f"{case}: {broken.status}"
    assert broken.status != "passed"
    for other in set(OTHERS) & set(results):  # graded after the broken topic, even if the worker died in it
        assert results[other].passed, f"{case}: {other} {results[other].status}\n{failing_texts(results[other])}"
    if case != "syntax_error":
        assert len(broken.tests) == len(graded["sys_exit"][BROKEN].tests), "tests went missing"


def test_syntax_error_names_file_and_line(graded):
    r = graded["syntax_error"][BROKEN]
    assert r.status == "syntax error"
    assert f"{BROKEN}.py:" in r.syntax_error and "syntax error" in r.syntax_error
    line = r.syntax_error.split(f"{BROKEN}.py:")[1].split(":")[0]
    source = (Path(r.syntax_error.split(":")[0])).read_text().splitlines()
    assert "def batchnorm_forward(x, gamma, beta, eps=1e-5:" in source[int(line) - 1]


def test_infinite_loop_times_out_one_test_and_the_rest_run(graded):
    r = graded["infinite_loop"][BROKEN]
    failed = [t for t in r.tests if not t.passed]
    assert len(failed) == 1 and "timed out after 1 s" in failed[0].text
    assert r.n_passed == len(r.tests) - 1


@pytest.mark.parametrize("case", ["sys_exit", "raise_systemexit", "keyboard_interrupt", "pytest_skip"])
def test_leaving_a_test_early_is_a_failure(graded, case):
    r = graded[case][BROKEN]
    assert r.n_passed == 0 and r.tests
    assert all("counts as a failure" in t.text for t in r.tests), failing_texts(r)[:500]


def test_os_exit_fails_the_test_in_flight_and_marks_the_rest_not_run(graded):
    r = graded["os_exit"][BROKEN]
    assert r.n_passed == 0
    assert "os._exit()" in r.tests[0].text
    assert all(t.text.startswith("not run") for t in r.tests[1:])


def test_an_object_equal_to_anything_fails(graded):
    r = graded["equals_anything"][BROKEN]
    assert not r.passed and r.score == 0
    value_tests = [t for t in r.tests if "matches_torch" in t.name]
    assert value_tests and not any(t.passed for t in value_tests)


def test_importing_solutions_is_flagged_and_scores_zero(graded):
    r = graded["imports_solutions"][BROKEN]
    assert r.status == "uses solutions" and r.score == 0 and not r.passed
    assert "solutions" in r.uses_solutions and f"{BROKEN}.py:" in r.uses_solutions


def test_reference_is_not_flagged_as_using_solutions():
    for name in topics.NAMES:
        assert grading.scan(BUILTIN["solutions"] / f"{name}.py") == ("", "")


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def stubs_run():
    """`python grader.py` on exercises/, with checksums of exercises/ around it."""
    before = checksums(BUILTIN["exercises"])
    done = run_cli("--impl", "exercises")
    return done, before, checksums(BUILTIN["exercises"])


@pytest.fixture(scope="module")
def solutions_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("json") / "results.json"
    done = run_cli(BROKEN, *OTHERS, "--impl", "solutions", "--json", path)
    return done, json.loads(path.read_text())


def test_grading_never_writes_to_exercises(stubs_run):
    done, before, after = stubs_run
    assert before == after


def test_scorecard_on_the_stubs_lists_every_topic_and_the_next_step(stubs_run):
    done, _, _ = stubs_run
    assert done.returncode == 1, done.stdout + done.stderr
    for name in topics.NAMES:
        assert f" {name} " in done.stdout
    assert f"pytest -m {topics.NAMES[0]}" in done.stdout and f"python grader.py {topics.NAMES[0]}" in done.stdout
    assert "not started" in done.stdout and "total: 0/100 points" in done.stdout
    assert "\033[" not in done.stdout, "plain text when not a terminal"


def test_json_has_gradescope_fields_and_exit_status_0(solutions_run):
    done, data = solutions_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert isinstance(data["score"], (int, float)) and isinstance(data["tests"], list)
    graded_topics = [t for t in topics.NAMES if t in (BROKEN, *OTHERS)]  # scorecard order is curriculum order
    assert len(data["tests"]) == len(graded_topics)
    for entry, name in zip(data["tests"], graded_topics):
        assert entry["name"].startswith(name)
        assert entry["status"] == "passed" and entry["score"] == entry["max_score"] == topics.get(name).points
        assert isinstance(entry["output"], str)
    assert data["score"] == sum(e["score"] for e in data["tests"])


def test_json_failed_entry_and_cli_survives_os_exit(tmp_path):
    impl = broken_impl(tmp_path / "impl", "os_exit")
    path = tmp_path / "results.json"
    done = run_cli(BROKEN, *OTHERS, "--impl", impl, "--json", path)
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(path.read_text())
    entries = {e["name"].split(":")[0]: e for e in data["tests"]}
    assert entries[BROKEN]["status"] == "failed" and entries[BROKEN]["score"] == 0
    assert "os._exit()" in entries[BROKEN]["output"]
    for other in OTHERS:
        assert entries[other]["status"] == "passed"


@pytest.mark.parametrize("args, words", [
    (["no_such_topic"], "unknown topic"),
    (["--hint", "batchnrom"], "did you mean batchnorm"),
    (["--impl", "/no/such/folder"], "not found"),
    (["--bogus"], "unrecognized"),
])
def test_usage_errors_exit_2_with_one_line(args, words):
    done = run_cli(*args)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_reset_backs_up_then_writes_the_stub(tmp_path):
    from kata.generate import expected
    impl = broken_impl(tmp_path / "impl", "sys_exit")
    target = impl / f"{BROKEN}.py"
    work = target.read_bytes()
    done = run_cli("--reset", BROKEN, "--impl", impl, state=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    backups = list((tmp_path / "state" / "backups").glob(f"{BROKEN}-*.py"))
    assert len(backups) == 1 and str(backups[0].name) in done.stdout
    assert hashlib.sha256(backups[0].read_bytes()).digest() == hashlib.sha256(work).digest()
    assert target.read_text(encoding="utf-8") == expected(BROKEN)
    run_cli("--reset", BROKEN, "--impl", impl, state=tmp_path / "state")  # a second reset keeps both
    assert len(list((tmp_path / "state" / "backups").glob(f"{BROKEN}-*.py"))) == 2


def test_reset_refuses_solutions():
    done = run_cli("--reset", BROKEN, "--impl", "solutions")
    assert done.returncode == 2


def test_hint_levels_move_on_and_stop_at_the_last(tmp_path):
    levels = topics.hints(BROKEN)
    assert len(levels) >= 3
    shown = [run_cli("--hint", BROKEN, state=tmp_path).stdout for _ in range(len(levels) + 1)]
    for k, text in enumerate(shown[:-1]):
        assert f"hint {k + 1} of {len(levels)}" in text and levels[k].strip()[:40] in text
    assert f"hint {len(levels)} of {len(levels)}" in shown[-1]
    assert json.loads((tmp_path / "hints.json").read_text())[BROKEN] == len(levels)


def test_explain_prints_the_topic_notes():
    done = run_cli("--explain", BROKEN)
    assert done.returncode == 0
    assert done.stdout.strip() == (topics.notes(BROKEN).strip() or f"{BROKEN}: no notes written yet.")


# ---------------------------------------------------------------- notebook
def test_check_returns_a_verdict_and_never_exits(tmp_path, capsys):
    good = grader.check(BROKEN, impl="solutions")
    assert good.passed and good.score == good.max_score == topics.get(BROKEN).points
    bad = grader.check(BROKEN, impl=broken_impl(tmp_path / "impl", "raise_systemexit"))
    assert not bad.passed and bad.score == 0 and bad.max_score == topics.get(BROKEN).points
    assert "FAIL" in capsys.readouterr().out
    with pytest.raises(ValueError):
        grader.check("no_such_topic")


def test_failure_shows_the_named_mistake_explanation(tmp_path):
    mistake = topics.mistakes(BROKEN)[0]
    from kata.catalog import build
    impl = build(mistake, tmp_path / "impl")
    r = grading.grade([BROKEN], impl, workers=1)[BROKEN]
    text = "\n".join(grader.details(r))
    assert f"[mistake: {mistake.id}]" in text
    assert mistake.explain.splitlines()[0] in text
    assert text.index("Known mistake") < text.index("Stuck? python grader.py --hint")


def test_spawned_workers_when_fork_is_unsafe(tmp_path):
    """A notebook kernel has threads, so check() starts `python -m kata.grading` workers instead."""
    impl = broken_impl(tmp_path / "impl", "os_exit")
    results = grading.grade([BROKEN, *OTHERS], impl, workers=1, fork=False)
    assert "os._exit()" in results[BROKEN].tests[0].text and not results[BROKEN].passed
    for other in OTHERS:
        assert results[other].passed, failing_texts(results[other])
