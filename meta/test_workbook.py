"""The workbook, notebooks/workbook.ipynb: written from notebooks/workbook.py, whose topic cells are
generated from solutions/ (a changed solution or cell file without a regenerated notebook fails
here), committed without outputs or machine paths, and, executed with nbclient in a real kernel,
free of error cells in both versions. The shipped stubs: every check fails and every experiment
prints which topic to finish. The reference: every check passes and every experiment draws its
figures and prints the lecture's numbers from the learner's functions."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from kata import generate, topics, workbook
from kata.loader import BUILTIN, ROOT

REAL = os.environ.get("MAKEMORE_NAMES") or str(ROOT.parent / "shared/data/names.txt")
CELL_TIMEOUT = 120  # seconds per cell; the slowest (viz #1 to #3, two deep-net builds, 1,001 steps) takes ~5 s

# What each experiment must do, written here rather than read from the generator's metadata:
# id: (the topic the stub run asks to finish first, figures in the reference run,
#      a pattern of what the learner's functions compute there, at the lecture's value)
EXPERIMENTS = {
    "starter": ("no_grad", 0, r"split_loss at init: train 26\.0047"),
    "initial_loss": ("initial_loss", 1, r"naive init, first batch: 27\.8817.*\n.*\n.*0\.01\): first batch 3\.3221"),
    "saturation": ("initial_loss", 3, r"saturation_fraction\(h\) = 0\.6095"),
    "kaiming": ("initial_loss", 2, r"hpreact std 1\.52, 8\.14% of"),
    "batchnorm": ("saturation", 1, r"column std 1\.0000 dividing by N"),
    "bn_training": ("no_grad", 1, r"running \(EMA\): train 2\.\d+, val 2\.\d+\n +calibrated: train 2\.\d+"),
    "deep_net": ("modules", 0, r"^47,024 parameters"),
    "bias": ("modules", 0, r"redundant_biases\(layers\) = \[0, 3, 6, 9, 12, 15\].*\n(?:.*\n)*.*removed 527 scalars"),
    "diagnostics": ("no_grad", 4, r"layer  2 \(Tanh\): mean [+-]0\.00, std 0\.6\d"),
    "update_ratio": ("modules", 1, r"mean of the last 100 steps: \(27, 10\) -\d\.\d\d"),
    "zero_init": ("no_grad", 1, r"unigram_loss\(Ytr\) = 2\.8226.*\n(?:.*\n)*.*moved: \['b2'\]"),
    "fold": ("no_grad", 0, r"torch\.allclose\(rtol=1e-4, atol=1e-5\): True"),
}


def committed() -> dict:
    return json.loads(workbook.NOTEBOOK.read_text(encoding="utf-8"))


def setup_cell() -> str:
    """The workbook's first code cell: it finds the kata and imports check, hint and explain."""
    return next(source(c) for c in committed()["cells"] if c["cell_type"] == "code")


def kata_cells(nb, kind: str) -> list:
    return [c for c in nb["cells"] if c["metadata"].get("kata", {}).get("kind") == kind]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# ---------------------------------------------------------------- generated, and in step with solutions/


def test_workbook_committed_is_what_the_generator_writes():
    assert not workbook.drift(), "notebooks/workbook.ipynb is out of date with solutions/: run python -m kata.workbook"
    assert workbook.main(["--check"]) == 0


def test_workbook_drift_is_reported_when_a_solution_docstring_changes(tmp_path, monkeypatch):
    changed = tmp_path / "solutions"
    shutil.copytree(BUILTIN["solutions"], changed)
    path = changed / "batchnorm.py"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Shape: x: (N, C), gamma: (C,)", "Shape: x: (N, D), gamma: (D,)"), encoding="utf-8")
    assert workbook.drift(solutions=changed), "a changed spec must make the committed notebook stale"
    stale = tmp_path / "workbook.ipynb"
    stale.write_text(workbook.render(changed), encoding="utf-8")
    monkeypatch.setattr(workbook, "NOTEBOOK", stale)
    assert workbook.main(["--check"]) == 1


def test_workbook_drift_is_reported_when_a_cell_of_the_py_file_changes(tmp_path, monkeypatch):
    edited = tmp_path / "workbook.py"
    text = workbook.SOURCE.read_text(encoding="utf-8")
    edited.write_text(text.replace("## Where next", "## What next"), encoding="utf-8")
    monkeypatch.setattr(workbook, "SOURCE", edited)
    assert workbook.render_source() == edited.read_text(encoding="utf-8"), "a hand-written cell is kept as written"
    assert workbook.drift(), "the .ipynb must follow notebooks/workbook.py"
    assert "## What next" in workbook.render()


def test_workbook_reference_follows_a_changed_solution_body(tmp_path):
    changed = tmp_path / "solutions"
    shutil.copytree(BUILTIN["solutions"], changed)
    path = changed / "initial_loss.py"
    path.write_text(path.read_text(encoding="utf-8").replace("return W * scale, b * 0", "return W * scale, b * 0.0"),
                    encoding="utf-8")
    assert "b * 0.0" in workbook.render(changed, reference=True)
    # the shipped notebook holds stubs only, so a body change leaves it as it is
    assert not workbook.drift(solutions=changed)


def test_workbook_committed_has_no_outputs_and_no_machine_paths():
    text = workbook.NOTEBOOK.read_text(encoding="utf-8")
    for cell in kata_cells(committed(), "check") + kata_cells(committed(), "experiment"):
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]
    assert all(c.get("outputs", []) == [] for c in committed()["cells"])
    for path in ("/work/", "/home/", "/tmp/", "/root/", "C:\\\\", "site-packages"):
        assert path not in text, f"the committed notebook names a path of one machine: {path}"


def test_workbook_is_valid_nbformat():
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(workbook.NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


@pytest.mark.parametrize("reference", [False, True], ids=["stubs", "reference"])
def test_workbook_every_code_cell_is_python(reference):
    """Found here in milliseconds rather than as an error cell a kernel run later (IPython magics,
    `%matplotlib inline`, are not Python and are left out)."""
    for cell in json.loads(workbook.render(reference=reference))["cells"]:
        if cell["cell_type"] == "code":
            ast.parse(re.sub(r"^%.*$", "", source(cell), flags=re.M), filename=cell["id"])


def test_workbook_has_spec_stub_and_check_for_every_topic_in_curriculum_order():
    cells = committed()["cells"]
    ids = [c["id"] for c in cells]
    assert [c["metadata"]["kata"]["topic"] for c in kata_cells(committed(), "check")] == list(topics.NAMES)
    for topic in topics.NAMES:
        spec, code, check = ids.index(f"{topic}-spec"), ids.index(f"{topic}-code"), ids.index(f"{topic}-check")
        assert spec + 1 == code and code + 1 == check, topic
        assert source(cells[check]) == f'check("{topic}", {", ".join(topics.get(topic).names)})'
        for label in ("**Formula", "**Shape**", "**Lecture value:**"):
            assert label in source(cells[spec]), f"{topic}'s spec has no {label}"


def test_workbook_stub_cells_are_the_generated_exercise_stubs():
    """Every raise in a stub cell is one of exercises/<topic>.py's (kata/generate.py's stub logic,
    with the hint asked for as in a notebook),
    the contract's names are all defined, and no line of a solution block is left in."""
    for cell in kata_cells(committed(), "topic"):
        topic, text = cell["metadata"]["kata"]["topic"], source(cell)
        exercise = (BUILTIN["exercises"] / f"{topic}.py").read_text(encoding="utf-8")
        raises = [line.strip() for line in text.splitlines() if line.strip().startswith("raise NotImplementedError(")]
        exercise_raises = [line.strip() for line in exercise.splitlines()
                           if line.strip().startswith("raise NotImplementedError(")]
        assert [re.search(r"\w+: [\w.]+ is yours to write", r).group(0) for r in raises] == \
            [re.search(r"\w+: [\w.]+ is yours to write", r).group(0) for r in exercise_raises], topic
        # the notebook's stubs ask for a hint as a notebook does
        assert all(f'(hint: hint("{topic}"))' in r and "grader.py" not in r for r in raises), raises
        defined = {node.name for node in ast.parse(text).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        assert set(topics.get(topic).names) <= defined, topic
        solution = (BUILTIN["solutions"] / f"{topic}.py").read_text(encoding="utf-8")
        for block in re.findall(rf"{generate.BEGIN}\n(.*?){generate.END}", solution, re.S):
            for line in block.splitlines():
                assert not line.strip() or line not in text.splitlines(), f"{topic}: solution line left in: {line}"


def test_workbook_experiments_call_only_the_topics_they_wait_for():
    """An experiment that called a topic it does not wait for would raise (an error cell) while that
    topic is a stub. Its own names are checked here; what the lecture's code calls goes through
    yours(), which holds only the topics the experiment waited for (the next test)."""
    owner = {name: t.name for t in topics.TOPICS for name in t.names}
    for cell in kata_cells(committed(), "experiment"):
        needs = set(workbook.needs(source(cell)))
        assert needs, f"{cell['id']} does not start with if ready(...)"
        waited = needs | {u for t in needs for u in topics.get(t).uses}
        names = {n.id for n in ast.walk(ast.parse(source(cell))) if isinstance(n, ast.Name)}
        called = {owner[n] for n in names if n in owner}
        assert called <= waited, f"{cell['id']} calls {sorted(called - waited)} without waiting for it"


def test_yours_holds_only_the_topics_the_last_ready_waited_for(monkeypatch):
    main = types.ModuleType("__main__")
    vars(main).update(topic_namespace(reference=True))
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert workbook.ready("bias_redundancy")
    code = workbook.yours()
    assert {"redundant_biases", "Linear", "BatchNorm1d"} <= set(vars(code)), "a topic's uses come along"
    assert not hasattr(code, "batchnorm_forward") and not hasattr(code, "split_loss")


def test_workbook_own_cells_never_rebind_a_contract_name():
    """A notebook variable named like a contract function (gain = 5/3) would replace the learner's."""
    contract = {name for t in topics.TOPICS for name in t.names}
    for cell in committed()["cells"]:
        if cell["cell_type"] != "code" or cell["metadata"].get("kata", {}).get("kind") in ("topic", "check"):
            continue
        tree = ast.parse(re.sub(r"^%.*$", "", source(cell), flags=re.M))
        stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        stored |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not stored & contract, f"{cell['id']} rebinds {sorted(stored & contract)}"


def test_workbook_experiment_ids_are_the_ones_tested_here():
    assert [c["metadata"]["kata"]["id"] for c in kata_cells(committed(), "experiment")] == list(EXPERIMENTS)


# ---------------------------------------------------------------- ready(): the experiments' guard


def topic_namespace(reference: bool) -> dict:
    """The names the notebook's topic cells define, run in order as a kernel would run them."""
    namespace = {"__name__": "__main__"}
    for cell in kata_cells(json.loads(workbook.render(reference=reference)), "topic"):
        exec(compile(source(cell), cell["id"], "exec"), namespace)  # noqa: S102 - the kata's own cells
    return namespace


def test_ready_finds_every_reference_topic_done_and_every_stub_not():
    done, stubs = topic_namespace(reference=True), topic_namespace(reference=False)
    for topic in topics.NAMES:
        assert workbook.problem(topic, done) == "", topic
        assert workbook.problem(topic, stubs) == f"{workbook.check_call(topic)} says what is left", topic


def test_ready_names_a_missing_definition_a_none_return_and_an_error():
    done = topic_namespace(reference=True)
    missing = {k: v for k, v in done.items() if k != "batchnorm_forward"}
    assert workbook.problem("batchnorm", missing).startswith("batchnorm_forward is not defined: run the batchnorm cell")
    no_return = {**done, "calibrate": lambda preacts: None}
    assert workbook.problem("running_stats", no_return).startswith("calibrate(preacts) returned None (a missing return?)")
    half = {**done, "scale_output_layer": lambda W, b, scale=0.01: (W * scale, None)}
    assert workbook.problem("initial_loss", half).startswith("scale_output_layer(W, b) returned None")

    shape_error = {**done, "batchnorm_forward": lambda x, gamma, beta, eps=1e-5: x @ torch.ones(5)}  # (3, 2) @ (5,)
    assert workbook.problem("batchnorm", shape_error).startswith("batchnorm_forward raised RuntimeError")


def test_ready_refuses_code_that_runs_but_computes_the_wrong_value():
    """An experiment must not run on a wrong function: an identity batch norm, or a BatchNorm1d
    that doubles its input, runs without an error but is not ready."""
    done = topic_namespace(reference=True)
    identity = {**done, "batchnorm_forward": lambda x, gamma, beta, eps=1e-5: x}
    assert workbook.problem("batchnorm", identity).startswith("batchnorm_forward(x, gamma, beta) returned"), \
        workbook.problem("batchnorm", identity)

    class Doubling(done["BatchNorm1d"]):
        def __call__(self, x):
            self.out = x * 2
            return self.out

    doubling = {**done, "BatchNorm1d": Doubling}
    assert workbook.problem("modules", doubling).startswith("BatchNorm1d(2)(x) in training mode returned"), \
        workbook.problem("modules", doubling)
    unbiased = {**done, "calibrate": lambda x: (x.mean(0), x.var(0, unbiased=False))}
    assert "calibrate(preacts) returned" in workbook.problem("running_stats", unbiased)


def test_ready_prints_one_line_for_the_earliest_unfinished_topic(monkeypatch, capsys):
    main = types.ModuleType("__main__")
    vars(main).update(topic_namespace(reference=False))
    vars(main).update({k: v for k, v in topic_namespace(reference=True).items()
                       if k in topics.get("initial_loss").names})
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert workbook.ready("running_stats", "initial_loss", "no_grad") is False
    assert capsys.readouterr().out == 'finish no_grad first: check("no_grad", split_loss) says what is left\n'
    assert workbook.ready("initial_loss") is True and capsys.readouterr().out == ""


# ---------------------------------------------------------------- executed in a real kernel


def execute(text: str, state: Path) -> tuple:
    """Run a notebook's text in a fresh python3 kernel started in notebooks/; (notebook, seconds)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not Path(REAL).is_file():
        pytest.skip("the real names.txt is not here: set MAKEMORE_NAMES")
    nb = nbformat.reads(text, as_version=4)
    with pytest.MonkeyPatch.context() as env:  # the kernel inherits this process's environment
        env.setenv("MAKEMORE_NAMES", REAL)
        env.setenv("KATA_STATE", str(state))  # hint levels go to a temporary folder, not .kata/
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=True,
                                         resources={"metadata": {"path": str(ROOT / "notebooks")}})
        started = time.perf_counter()
        client.execute()
    return nb, time.perf_counter() - started


def text_of(cell) -> str:
    """What a cell printed, and the text of its last expression's value."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "execute_result":
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def figures(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def error_cells(nb) -> list[str]:
    return [f"{c['id']}: {o['ename']}: {o['evalue']}" for c in nb["cells"] for o in c.get("outputs", [])
            if o["output_type"] == "error"]


def status(cell) -> str:
    """The status in the scorecard row that the check cell printed ("passed", "not started", ...)."""
    topic = cell["metadata"]["kata"]["topic"]
    m = re.search(rf"^\s*\d+\s+{topic}\s+(\w[\w ]*?)\s+[\d-]", text_of(cell), re.M)
    assert m, f"{cell['id']} printed no scorecard row: {text_of(cell)[-500:]}"
    return m.group(1)


def verdict(cell) -> bool:
    return status(cell) == "passed"


def slowest(nb, n=3) -> str:
    from datetime import datetime
    times = []
    for c in nb["cells"]:
        t = c["metadata"].get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            times.append(((end - start).total_seconds(), c["id"]))
    return ", ".join(f"{cid} {s:.1f} s" for s, cid in sorted(times, reverse=True)[:n])


@pytest.fixture(scope="module")
def stub_run(tmp_path_factory):
    nb, seconds = execute(workbook.NOTEBOOK.read_text(encoding="utf-8"), tmp_path_factory.mktemp("state"))
    print(f"\nshipped workbook executed in {seconds:.1f} s (slowest: {slowest(nb)})")
    return nb


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    nb, seconds = execute(workbook.render(reference=True), tmp_path_factory.mktemp("state"))
    print(f"\nreference workbook executed in {seconds:.1f} s (slowest: {slowest(nb)})")
    return nb


@pytest.mark.timeout(300)
def test_workbook_as_shipped_runs_top_to_bottom_without_an_error_cell(stub_run):
    assert not error_cells(stub_run), error_cells(stub_run)
    assert "182,625 / 22,655 / 22,866 train / val / test examples" in text_of(
        next(c for c in stub_run["cells"] if c["id"] == "data"))


@pytest.mark.timeout(300)
def test_workbook_as_shipped_fails_every_check(stub_run):
    for cell in kata_cells(stub_run, "check"):
        assert status(cell) == "not started", text_of(cell)[-300:]
        assert not any(out["output_type"] == "execute_result" for out in cell["outputs"]), \
            f"{cell['id']} echoed the Check under the cell: {text_of(cell)[-300:]}"


@pytest.mark.timeout(300)
def test_workbook_as_shipped_says_which_topic_to_finish_in_each_experiment(stub_run):
    for cell in kata_cells(stub_run, "experiment"):
        first = EXPERIMENTS[cell["metadata"]["kata"]["id"]][0]
        assert re.fullmatch(rf'finish {first} first: check\("{first}", [\w, ]+\) says what is left\n',
                            text_of(cell)), f"{cell['id']}: {text_of(cell)!r}"
        assert figures(cell) == 0, cell["id"]


@pytest.mark.timeout(300)
def test_workbook_reference_runs_without_an_error_cell_and_passes_every_check(reference_run):
    assert not error_cells(reference_run), error_cells(reference_run)
    for cell in kata_cells(reference_run, "check"):
        assert verdict(cell), f"{cell['id']} did not pass with the reference:\n{text_of(cell)[-1500:]}"
        assert "Next: run the experiment cell below" in text_of(cell), text_of(cell)


@pytest.mark.timeout(300)
def test_workbook_reference_experiments_draw_their_figures_and_the_lecture_numbers(reference_run):
    for cell in kata_cells(reference_run, "experiment"):
        _, expected_figures, pattern = EXPERIMENTS[cell["metadata"]["kata"]["id"]]
        text = text_of(cell)
        assert "finish " not in text, f"{cell['id']} did not run: {text}"
        assert figures(cell) == expected_figures, f"{cell['id']}: {figures(cell)} figures, expected {expected_figures}"
        assert re.search(pattern, text, re.M), f"{cell['id']} printed:\n{text}"


NOTEBOOK_CELLS = [
    "import math\n\n\ndef expected_initial_loss(vocab_size):\n    return math.log2(vocab_size)  # not nats\n\n\n"
    "def scale_output_layer(W, b, scale=0.01):\n    return W * scale, b * 0",
    'verdict = check("initial_loss", expected_initial_loss, scale_output_layer)\n'
    "print(f'passed={verdict.passed} status={verdict.status} bool={bool(verdict)}')",
    'hint("batchnorm")', 'hint("batchnorm")', 'explain("batchnorm")',
    "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    mean = x.mean(0, keepdim=True)\n"
    "    var = ((x - mean) ** 2).mean(0, keepdim=True)\n    return gamma * (x - mean) / torch.sqrt(var + eps) + beta",
    'check("batchnorm", batchnorm_forward)',
    "def split_loss(forward, X, Y):\n    with torch.no_grad():\n        logits = forward(X)\n"
    "    return F.cross_entropy(logits, Yy).item()  # a typo",
    'check("no_grad")',
    "check()",
]


@pytest.mark.timeout(180)
def test_workbook_check_hint_and_explain_in_a_kernel_print_what_the_grader_prints(tmp_path):
    """check() prints the verdict and shows no Check object; a pass says what to do next; a typo's
    NameError shows the learner's line of the cell; check() with no topic prints the scorecard of
    what the notebook defines; hint() and explain() print what the grader prints, with the
    notebook's spelling of the next step."""
    nbformat = pytest.importorskip("nbformat")
    cells = [setup_cell(), *NOTEBOOK_CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    ran, _ = execute(nbformat.writes(nb), tmp_path / "kernel-state")
    assert not error_cells(ran), error_cells(ran)
    out = [text_of(c) for c in ran["cells"]]
    assert "passed=False status=failing bool=False" in out[2], out[2]
    assert not any(o["output_type"] == "execute_result" for c in ran["cells"] for o in c["outputs"]), \
        "a cell echoed its last value (check() returns a Check that shows nothing)"

    def grader(*args):  # a fresh hint state of its own, so both start at level 1
        env = {**os.environ, "KATA_STATE": str(tmp_path / "grader-state")}
        return subprocess.run([sys.executable, "grader.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True).stdout

    for cell, level in ((3, 1), (4, 2)):
        body, footer = out[cell].rstrip("\n").rsplit("\n", 1)
        cli_body, cli_footer = grader("--hint", "batchnorm").rstrip("\n").rsplit("\n", 1)
        assert body == cli_body and f"hint {level} of" in body, (out[cell], cli_body)
        assert footer == cli_footer.replace("python grader.py --hint batchnorm --level N", 'hint("batchnorm", level=N)') \
            .replace("python grader.py --hint batchnorm", 'hint("batchnorm")'), footer
        assert "grader.py" not in footer, footer
    assert out[5] == grader("--explain", "batchnorm")
    assert "batchnorm: all 18 tests pass." in out[7], out[7]
    assert "Next: run the experiment cell below (batch normalization on the first batch)" in out[7], out[7]
    assert re.search(r"NameError: name 'Yy' is not defined\n +at a notebook cell, line 4 in split_loss: "
                     r"return F\.cross_entropy\(logits, Yy\)\.item\(\)", out[9]), out[9]
    rows = re.findall(r"^\s*\d+\s+(\w+)\s+(\w[\w ]*?)\s+[\d-]", out[10], re.M)
    assert rows == [("no_grad", "failing"), ("initial_loss", "failing"), ("batchnorm", "passed")], out[10]
    assert "total: 15/25 points, 1/3 topics passed; next: no_grad" in out[10], out[10]
