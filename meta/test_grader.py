"""The grader's own tests: learner code that misbehaves or forges, the JSON, exit codes, reset,
restore, compare, hints, check().

Each misbehaving implementation is solutions/ copied to a temporary folder with batchnorm.py
broken one way. The grading engine runs in-process (pytest in this process; the learner code in
a learner process of its own), and the command line as a subprocess where the process boundary
is the point. Runs are shared per module.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kata import grading, topics
from kata.failure import Kind
from kata.grading import Status
from kata.loader import BUILTIN, ROOT

pytestmark = pytest.mark.timeout(300)  # module fixtures grade many times; each test body is fast

BROKEN = "batchnorm"
OTHER = "initial_loss"  # graded in the same run, after the broken topic's learner process misbehaved
ALONGSIDE = {"syntax_error", "os_exit", "segfault", "keyboard_interrupt", "forge_channel", "exit_at_import"}

# Each case is appended to the reference: it redefines batchnorm_forward, or runs at import time.
CASES = {
    "syntax_error": "def batchnorm_forward(x, gamma, beta, eps=1e-5:\n    return x\n",
    "infinite_loop": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                      "    while True:\n        pass\n"),
    "sys_exit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import sys\n    sys.exit(0)\n",
    "os_exit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import os\n    os._exit(0)\n",
    "segfault": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import ctypes\n"
                 "    return ctypes.string_at(0)\n"),
    "raise_systemexit": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    raise SystemExit\n",
    "keyboard_interrupt": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    raise KeyboardInterrupt\n",
    "pytest_skip": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    import pytest\n"
                    "    pytest.skip('looks done to me')\n"),
    "equals_anything": (
        "class _Anything(float):\n"
        "    def __eq__(self, other):\n        return True\n"
        "    def __ne__(self, other):\n        return False\n"
        "    def __getattr__(self, name):\n        return lambda *a, **k: self\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return _Anything(0.0)\n"),
    "tensor_subclass": (  # a tensor that claims to equal anything: it crosses as its plain values
        "import torch\n"
        "class _Liar(torch.Tensor):\n"
        "    def __eq__(self, other):\n        return True\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        return True if func.__name__ in ('allclose', 'equal', 'isclose') else super().__torch_function__(func, types, args, kwargs or {})\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x.as_subclass(_Liar)\n"),
    "imports_solutions": ("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                          "    from solutions.batchnorm import batchnorm_forward as reference\n"
                          "    return reference(x, gamma, beta, eps)\n"),
    # forgeries that worked when learner code ran in the test process
    "patch_pytest_reports": (
        "import _pytest.reports, _pytest.runner\n"
        "_made = _pytest.reports.TestReport.from_item_and_call.__func__\n"
        "def _passed(cls, item, call):\n"
        "    report = _made(cls, item, call)\n"
        "    report.outcome, report.longrepr = 'passed', None\n"
        "    return report\n"
        "_pytest.reports.TestReport.from_item_and_call = classmethod(_passed)\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x\n"),
    "rebind_helpers": (
        "import kata.testing, kata.remote\n"
        "kata.testing.expect_close = kata.testing.expect = kata.testing.fail = lambda *a, **k: None\n"
        "kata.remote.LearnerProcess._finish = lambda *a, **k: None\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x\n"),
    "forge_channel": (  # write 'passed' results (the old grader's protocol, and ours) to every descriptor
        "import json, os\n"
        "_lies = [json.dumps({'ev': 'result', 'id': 'x', 'passed': True, 'text': ''}).encode() + b'\\n',\n"
        "         b'\\x40\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x10\\x00\\x00\\x00{\"ok\": 1, \"blobs\": []}']\n"
        "for _fd in range(1, 64):\n"
        "    for _lie in _lies:\n"
        "        try:\n            os.write(_fd, _lie)\n"
        "        except OSError:\n            pass\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x\n"),
    "exit_at_import": (  # learner code that exits with status 0 at import: plain pytest must still fail
        "import os\nos._exit(0)\n"),
    # ways round the shortcut rule and the reference: the values are right, the rule is broken
    "guards_removed": (
        "import sys, torch.nn.functional as F\n"
        "_m = sys.modules['kata.learner']\n"
        "for _owner, _attr, _guard in list(_m._guards.values()):\n"
        "    setattr(_owner, _attr, _guard.__closure__[-1].cell_contents if _guard.__closure__ else _guard)\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
        "    return getattr(F, 'batch' + '_norm')(x, None, None, gamma, beta, training=True, eps=eps)\n"),
    "native_batch_norm": ("import torch\ndef batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                          "    return torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, eps)[0]\n"),
    "solutions_by_name": ("import importlib\n"
                          "batchnorm_forward = importlib.import_module('sol' + 'utions.batchnorm').batchnorm_forward\n"),
    "daemon": (  # a process that outlives the learner's, to rewrite the results after the grader exits
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(3)\n"
        "        for _p in os.environ.get('KATA_TEST_JSON', '').split(':'):\n"
        "            if _p:\n"
        "                open(_p, 'w').write('{\"score\": 100}')\n"
        "    os._exit(0)\n"
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x\n"),
}


def broken_impl(folder: Path, case: str) -> Path:
    shutil.copytree(BUILTIN["solutions"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = folder / f"{BROKEN}.py"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + CASES[case], encoding="utf-8")
    return folder


def checksums(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def run_cli(*args, state=None, env=None, timeout=240):
    environment = {k: v for k, v in os.environ.items() if k not in ("KATA_IMPL", "KATA_STATE")}
    environment.update(env or {})
    if state:
        environment["KATA_STATE"] = str(state)
    return subprocess.run([sys.executable, str(ROOT / "grader.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=environment, timeout=timeout)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every case graded once, in this process: {case: ({topic: TopicResult}, seconds)}."""
    out = {}
    for case in CASES:
        impl = broken_impl(tmp_path_factory.mktemp(case) / "impl", case)
        chosen = [BROKEN, OTHER] if case in ALONGSIDE else [BROKEN]
        start = time.perf_counter()
        results = grading.grade(chosen, impl, timeout=1 if case == "infinite_loop" else 5)
        out[case] = (results, time.perf_counter() - start)
    return out


def failing_texts(result) -> str:
    return "\n".join(t.text for t in result.tests if not t.passed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grade_every_misbehaving_case_fails_its_topic_and_keeps_the_others(graded, case):
    results, _ = graded[case]
    assert set(results) == ({BROKEN, OTHER} if case in ALONGSIDE else {BROKEN}), "a topic was dropped"
    broken = results[BROKEN]
    assert not broken.passed and broken.score == 0, f"{case}: {broken.status}"
    if case not in ("syntax_error", "exit_at_import", "imports_solutions"):  # no test ran past the import, or
        # the reference's code ran (and is flagged: it scores 0)
        assert broken.n_passed < len(broken.tests) // 2, f"{case}: {broken.n_passed} of {len(broken.tests)} passed"
    if OTHER in results:  # graded after the broken topic, even if its learner process died in it
        assert results[OTHER].passed, f"{case}: {OTHER} {results[OTHER].status}\n{failing_texts(results[OTHER])}"


def test_grade_syntax_error_names_file_and_line(graded):
    r = graded["syntax_error"][0][BROKEN]
    assert r.status == Status.SYNTAX_ERROR
    assert f"{BROKEN}.py:" in r.syntax_error and "syntax error" in r.syntax_error


def test_grade_infinite_loop_times_out_once_and_fails_the_rest_at_once(graded):
    r, seconds = graded["infinite_loop"][0][BROKEN], graded["infinite_loop"][1]
    failed = [t for t in r.tests if not t.passed]
    assert r.status == Status.TIMED_OUT and all(t.kind == Kind.TIMEOUT for t in failed)
    assert "timed out after 1 s" in failed[0].text, failed[0].text
    assert all(t.text.startswith("not run: batchnorm_forward timed out in an earlier test") for t in failed[1:]
               if "batchnorm_forward" in t.text), failing_texts(r)[:800]
    assert seconds < 15, f"one hung function cost {seconds:.1f} s: only its first call may wait out the limit"


@pytest.mark.parametrize("case", ["sys_exit", "raise_systemexit", "keyboard_interrupt", "pytest_skip"])
def test_grade_leaving_a_test_early_is_a_failure(graded, case):
    r = graded[case][0][BROKEN]
    failed = [t for t in r.tests if not t.passed]
    calls = [t for t in failed if "leaving a test early" in t.text]
    assert calls and all(t.kind == Kind.ESCAPE for t in calls), failing_texts(r)[:500]
    what = {"sys_exit": "sys.exit(0)", "raise_systemexit": "sys.exit()", "keyboard_interrupt": "KeyboardInterrupt",
            "pytest_skip": "pytest.skip()"}[case]
    assert what in calls[0].text


@pytest.mark.parametrize("case, words", [("os_exit", "exit status 0"), ("segfault", "SIGSEGV")])
def test_grade_a_call_that_ends_the_learner_process_fails_and_the_rest_fail_at_once(graded, case, words):
    r = graded[case][0][BROKEN]
    failed = [t for t in r.tests if not t.passed]
    assert failed[0].kind == Kind.CRASH and words in failed[0].text, failed[0].text
    later = [t for t in failed[1:] if "batchnorm_forward" in t.text]
    assert later and all(t.text.startswith("not run: batchnorm_forward ended the learner process") for t in later)


@pytest.mark.parametrize("case", ["equals_anything", "tensor_subclass"])
def test_grade_objects_that_claim_equality_cross_as_plain_values_and_fail(graded, case):
    r = graded[case][0][BROKEN]
    value_tests = [t for t in r.tests if "matches_torch" in t.name]
    assert value_tests and not any(t.passed for t in value_tests)


@pytest.mark.parametrize("case", ["guards_removed", "native_batch_norm", "solutions_by_name"])
def test_grade_ways_round_the_rules_fail(graded, case):
    r = graded[case][0][BROKEN]
    assert not r.passed and r.n_passed < len(r.tests) // 2, (case, r.status, r.n_passed)
    words = {"guards_removed": "guard", "native_batch_norm": "shortcut", "solutions_by_name": "not yours to import"}
    assert any(words[case] in t.text or t.mistake == "shortcut" for t in r.tests if not t.passed), failing_texts(r)[:600]


def test_cli_a_process_learner_code_leaves_behind_cannot_rewrite_the_results(tmp_path):
    impl = broken_impl(tmp_path / "impl", "daemon")
    path = tmp_path / "results.json"
    done = run_cli(BROKEN, "--impl", impl, "--json", path, env={"KATA_TEST_JSON": str(path)})
    assert done.returncode == 1
    time.sleep(4)  # past the moment the orphan would have written
    assert json.loads(path.read_text())["score"] == 0, path.read_text()[:300]


@pytest.mark.parametrize("case", ["patch_pytest_reports", "rebind_helpers", "forge_channel"])
def test_grade_learner_code_cannot_reach_pytest_the_helpers_or_the_results(graded, case):
    r = graded[case][0][BROKEN]
    assert r.status == Status.FAILING and r.n_passed < len(r.tests) // 2, (r.status, r.n_passed)
    # the value is checked here, whatever learner code patched there; bytes written into the reply
    # pipe are a malformed reply, not a result
    seen = "malformed reply" if case == "forge_channel" else "expected tensor"
    assert any(seen in t.text for t in r.tests if not t.passed), failing_texts(r)[:600]


def test_grade_importing_solutions_is_flagged_and_scores_zero(graded):
    r = graded["imports_solutions"][0][BROKEN]
    assert r.status == Status.USES_SOLUTIONS and r.score == 0 and not r.passed
    assert "solutions" in r.uses_solutions and f"{BROKEN}.py:" in r.uses_solutions


def test_grade_reference_is_not_flagged_as_using_solutions():
    for name in topics.NAMES:
        assert grading.scan(BUILTIN["solutions"] / f"{name}.py") == ("", "")


def test_grade_a_missing_file_is_reported_as_missing(tmp_path):
    impl = Path(shutil.copytree(BUILTIN["solutions"], tmp_path / "impl"))
    (impl / f"{BROKEN}.py").unlink()
    r = grading.grade([BROKEN], impl)[BROKEN]
    assert r.status == Status.MISSING and "does not exist" in r.missing and not r.syntax_error


def test_plain_pytest_exits_non_zero_when_learner_code_exits_0(tmp_path):
    for case in ("exit_at_import", "os_exit", "patch_pytest_reports"):
        impl = broken_impl(tmp_path / case, case)
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--impl", str(impl),
                               str(grading.test_file(BROKEN))], cwd=ROOT, capture_output=True, text=True, timeout=240)
        last = done.stdout.splitlines()[-1]
        # returning x passes one test honestly: the hygiene check (grad mode and dtype kept), never a value
        passes = "1 passed" in last if case == "patch_pytest_reports" else "passed" not in last
        assert done.returncode == 1 and passes and ("failed" in last or "error" in last), \
            f"{case}: exit {done.returncode}\n{done.stdout[-1500:]}"


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
    done = run_cli(BROKEN, OTHER, "--impl", "solutions", "--json", path)
    return done, json.loads(path.read_text())


def test_cli_grading_never_writes_to_exercises(stubs_run):
    done, before, after = stubs_run
    assert before == after


def test_cli_scorecard_on_the_stubs_lists_every_topic_and_the_next_step(stubs_run):
    done, _, _ = stubs_run
    assert done.returncode == 1, done.stdout + done.stderr
    for name in topics.NAMES:
        assert f" {name} " in done.stdout
    assert f"pytest -m {topics.NAMES[0]}" in done.stdout and f"python grader.py {topics.NAMES[0]}" in done.stdout
    assert "not started" in done.stdout and "total: 0/100 points" in done.stdout
    assert "\033[" not in done.stdout, "plain text when not a terminal"


def test_cli_json_has_gradescope_fields_and_exit_status_0(solutions_run):
    done, data = solutions_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert isinstance(data["score"], (int, float)) and isinstance(data["tests"], list)
    graded_topics = [t for t in topics.NAMES if t in (BROKEN, OTHER)]  # scorecard order is curriculum order
    assert len(data["tests"]) == len(graded_topics)
    for entry, name in zip(data["tests"], graded_topics):
        assert entry["name"].startswith(name)
        assert entry["status"] == "passed" and entry["score"] == entry["max_score"] == topics.get(name).points
        assert isinstance(entry["output"], str)
    assert data["score"] == sum(e["score"] for e in data["tests"])


def test_cli_json_failed_entry_when_learner_code_exits(tmp_path):
    impl = broken_impl(tmp_path / "impl", "os_exit")
    path = tmp_path / "results.json"
    done = run_cli(BROKEN, OTHER, "--impl", impl, "--json", path)
    assert done.returncode == 1, done.stdout + done.stderr
    entries = {e["name"].split(":")[0]: e for e in json.loads(path.read_text())["tests"]}
    assert entries[BROKEN]["status"] == "failed" and entries[BROKEN]["score"] == 0
    assert "ended the learner process" in entries[BROKEN]["output"]
    assert entries[OTHER]["status"] == "passed"


def test_cli_a_known_mistake_is_one_cause_before_any_failure_and_repeats_collapse(tmp_path):
    from kata.catalog import build
    mistake = next(m for m in topics.mistakes(BROKEN) if m.id == "unbiased_variance")
    impl = build(mistake, tmp_path / "impl")
    done = run_cli(BROKEN, "--impl", impl)
    text = done.stdout
    assert done.returncode == 1 and f"CAUSE: {mistake.title} [{mistake.id}]" in text, text
    assert text.count("CAUSE") == 1 and "FAIL" not in text, text  # one mistake, one message
    assert text.index("CAUSE") < text.index("Stuck? python grader.py --hint")
    assert mistake.explain.splitlines()[0] in text
    stub = run_cli(BROKEN, "--impl", "exercises").stdout  # 18 tests fail with one message: shown once
    assert stub.count("NotImplementedError: batchnorm:") == 1 and "tests (every test)" in stub, stub[-800:]
    assert "CAUSE" not in stub  # a stub's NotImplementedError is not a mistake


@pytest.mark.parametrize("args, words", [
    (["no_such_topic"], "unknown topic"),
    (["--hint", "batchnrom"], "did you mean batchnorm"),
    (["--impl", "/no/such/folder"], "not found"),
    (["--bogus"], "unrecognized"),
    (["--level", "2"], "--level goes with --hint"),
])
def test_cli_usage_errors_exit_2_with_one_line(args, words):
    done = run_cli(*args)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_cli_output_into_a_closed_pipe_ends_quietly():
    done = subprocess.run(f"{sys.executable} grader.py --impl solutions --list | head -2", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_cli_reset_backs_up_then_writes_the_stub_and_restore_brings_it_back(tmp_path):
    from kata.generate import expected
    impl = broken_impl(tmp_path / "impl", "sys_exit")
    target = impl / f"{BROKEN}.py"
    work = target.read_bytes()
    done = run_cli("--reset", BROKEN, "--impl", impl, state=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    backups = list((tmp_path / "state" / "backups").glob(f"{BROKEN}-*.py"))
    assert len(backups) == 1 and str(backups[0].name) in done.stdout
    assert backups[0].read_bytes() == work and target.read_text(encoding="utf-8") == expected(BROKEN)
    again = run_cli("--reset", BROKEN, "--impl", impl, state=tmp_path / "state")  # the stub: nothing to back up
    assert "untouched stub" in again.stdout and len(list((tmp_path / "state" / "backups").glob("*.py"))) == 1
    target.write_text(expected(BROKEN) + "\n# started again\n", encoding="utf-8")
    restored = run_cli("--restore", BROKEN, "--impl", impl, state=tmp_path / "state")
    assert restored.returncode == 0 and target.read_bytes() == work, restored.stdout
    kept = [p.read_text(encoding="utf-8") for p in (tmp_path / "state" / "backups").glob("*.py")]
    assert any("# started again" in text for text in kept), "restore backs up the file it replaces"


def test_cli_reset_refuses_solutions():
    done = run_cli("--reset", BROKEN, "--impl", "solutions")
    assert done.returncode == 2


def test_cli_compare_refuses_before_the_topic_passes_and_shows_a_diff_after(tmp_path):
    before = run_cli("--compare", BROKEN, "--impl", "exercises", state=tmp_path)
    assert before.returncode == 1 and before.stdout.strip().splitlines()[-1].startswith(f"{BROKEN} does not pass yet")
    impl = Path(shutil.copytree(ROOT / "meta" / "alternatives" / "plain", tmp_path / "impl"))  # correct, not ours
    after = run_cli("--compare", BROKEN, "--impl", impl, state=tmp_path)
    assert after.returncode == 0 and "--- yours:" in after.stdout and "+++ reference:" in after.stdout, after.stdout
    assert f"--explain {BROKEN}" in after.stdout


def test_cli_hint_levels_move_on_stop_at_the_last_and_can_go_back(tmp_path):
    levels = topics.hints(BROKEN)
    assert len(levels) >= 3
    shown = [run_cli("--hint", BROKEN, state=tmp_path).stdout for _ in range(len(levels) + 1)]
    for k, text in enumerate(shown[:-1]):
        assert f"hint {k + 1} of {len(levels)}" in text and levels[k].strip()[:40] in text
    assert f"hint {len(levels)} of {len(levels)}" in shown[-1]
    assert json.loads((tmp_path / "hints.json").read_text())[BROKEN] == len(levels)
    first = run_cli("--hint", BROKEN, "--level", "1", state=tmp_path).stdout
    assert f"hint 1 of {len(levels)}" in first and levels[0].strip()[:40] in first


def test_cli_explain_prints_the_topic_notes():
    done = run_cli("--explain", BROKEN)
    assert done.returncode == 0
    assert done.stdout.strip() == (topics.notes(BROKEN).strip() or f"{BROKEN}: no notes written yet.")


# ---------------------------------------------------------------- notebook
def test_check_returns_a_falsy_verdict_for_a_failing_folder_and_never_exits(tmp_path, capsys):
    import grader
    good = grader.check(BROKEN, impl="solutions")
    assert good and good.passed and good.score == good.max_score == topics.get(BROKEN).points
    bad = grader.check(BROKEN, impl=broken_impl(tmp_path / "impl", "raise_systemexit"))
    assert not bad and bad.score == 0 and bad.max_score == topics.get(BROKEN).points
    assert "FAIL" in capsys.readouterr().out
    with pytest.raises(ValueError):
        grader.check("no_such_topic")


SCRIPT = '''
import torch
from grader import check

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta

ok = check("batchnorm", batchnorm_forward)
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(0)) / x.std(0) + beta
bad = check("batchnorm")      # taken from the namespace
class Linear:
    pass
missing = check("modules")    # BatchNorm1d and Tanh are not defined
print("RESULT", bool(ok), ok.score, bool(bad), bad.score, bool(missing))
'''


def test_check_grades_functions_defined_in_the_main_program(tmp_path):
    """What a notebook cell does: functions defined in __main__, pickled by value to the grader."""
    script = tmp_path / "cell.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert last == [f"RESULT True {topics.get(BROKEN).points} False 0 False"], done.stdout[-3000:] + done.stderr[-2000:]
    # naming the unbiased variance is the diagnosis engine's (issue 13); the tests no longer do
    assert "define BatchNorm1d and Tanh in a cell" in done.stdout, done.stdout


NO_GRAD_FORGED = '''import torch
import torch.nn.functional as F

def split_loss(forward, X, Y):
    real = torch.is_grad_enabled
    torch.is_grad_enabled = lambda: False  # what a test might ask when its forward is called back
    try:
        logits = forward(X)
    finally:
        torch.is_grad_enabled = real
    return F.cross_entropy(logits, Y).item()
'''


def test_grade_a_forged_grad_mode_does_not_hide_a_missing_no_grad(tmp_path):
    impl = Path(shutil.copytree(BUILTIN["solutions"], tmp_path / "impl"))
    (impl / "no_grad.py").write_text(NO_GRAD_FORGED, encoding="utf-8")
    r = grading.grade(["no_grad"], impl)["no_grad"]
    assert not r.passed, failing_texts(r)[:600]  # naming it no_no_grad: the engine's (issue 13)
