"""The attack suite (issue 14): each route a determined student tried is a learner file, and one
submission holds them all, one route per topic file. It is graded through run_autograder as root,
twice: in the sandbox (where this machine can start one), and with the sandbox forced off
(KATA_SANDBOX=0, as on Gradescope, where learner code runs as `nobody`). For every route:

- the topic scores 0 or is flagged for review (a hidden entry "<topic>: needs review");
- the run ends with a results.json, and nothing changes it afterwards;
- every process of the run stays under 1.5 GB (the peak RSS of the run's processes).

What stops each route, by mode (ROUTES below): the grading side's own checks hold in every mode.
The routes marked "sandbox or another user" write the grading user's files or read its process:
they are stopped by the sandbox, or by running learner code as another user (root with
KATA_LEARNER_USER, as run_autograder does); a local run without a sandbox as the grading user
(a laptop without bwrap, a notebook's check()) does not stop them. Those routes say
ROUTE-OPEN in their failure message if they get through, ROUTE-CLOSED if not.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from kata import gradescope, grading, review, sandbox
from kata.loader import BUILTIN, ROOT

pytestmark = pytest.mark.timeout(600)

LIMIT_RSS = 1.5 * 2**30  # bytes
ALTERNATIVES = ROOT / "meta" / "alternatives"


def solution(topic: str) -> str:
    return (BUILTIN["solutions"] / f"{topic}.py").read_text(encoding="utf-8")


# topic -> (route, what stops it, source); {results}, {pyc} are filled in per run
ROUTES = {
    "batchnorm": ("torch's batch norm by a computed name", "review flag", '''
import torch

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    f = getattr(torch._C._VariableFunctions, "batch" + "_norm")
    return f(x, gamma, beta, None, None, True, 0.0, eps, False)
'''),
    "running_stats": ("torch.ops.aten.native_batch_norm", "review flag", None),  # the reference, plus below
    "fold_batchnorm": ("the runtime guard's own __closure__", "review flag", None),
    "kaiming": ("a latin-1 coding line and a non-UTF-8 byte around a shortcut", "the source scan reads it",
                '''# -*- coding: latin-1 -*-
# caf\xe9
import torch

def gain(nonlinearity, param=None):
    return torch.nn.init.calculate_gain(nonlinearity, param)

def kaiming_std(fan_in, nonlinearity="tanh"):
    return gain(nonlinearity) / fan_in ** 0.5

def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    return torch.randn(fan_in, fan_out, generator=generator) * kaiming_std(fan_in, nonlinearity)
'''),
    "modules": ("rebinding the learner process's own reporting (Server.run.__defaults__)", "review flag", None),
    "no_grad": ("a callback every half second, to keep a call alive", "one deadline per call", '''
import time

def split_loss(forward, X, Y):
    while True:
        forward(X[:1])
        time.sleep(0.5)
'''),
    "initial_loss": ("a 12-byte frame that announces 1 GiB", "frames capped, read in chunks", '''
import os, stat, struct, time

def expected_initial_loss(vocab_size):
    for fd in range(3, 256):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, struct.pack("<QI", 1 << 30, 10))
        except OSError:
            pass
    time.sleep(5)
    return 0.0

def scale_output_layer(W, b, scale=0.01):
    return W, b
'''),
    "saturation": ("a returned list of 8 million floats, a 16 MB tensor", "the deadline, frames capped", '''
def saturation_fraction(h, threshold=0.99):
    return [0.5] * 8_000_000

def dead_neurons(h, threshold=0.99):
    import torch
    return torch.zeros(4_000_000)  # 16 MB of tensor data: quick to send, and refused

def tanh_backward(h, grad_out):
    return [0.5] * 8_000_000
'''),
    "diagnostics": ("decoy processes and a watcher that rewrite results.json after the run",
                    "PID namespace (sandbox) / killing every process of the learner's user", '''
import os, time

RESULTS = {results!r}
FORGED = '{{"score": 100, "max_score": 100, "output": "forged", "tests": []}}'
_started = []

def _daemon():
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    end = time.time() + 30
    while time.time() < end:
        try:
            with open(RESULTS, "w") as f:
                f.write(FORGED)
        except OSError:
            pass
        try:
            if os.fork() == 0:
                time.sleep(0.3)
                os._exit(0)
        except OSError:
            pass
        time.sleep(0.1)
    os._exit(0)

def activation_stats(t, threshold=0.97):
    if not _started:
        _started.append(1)
        _daemon()
    return {{"mean": 0.0, "std": 0.0, "saturated": 0.0}}

def grad_to_data_ratio(param, grad):
    return 0.0
'''),
    "bias_redundancy": ("bytecode written into kata/__pycache__", "sandbox or another user", '''
import os

PYC = {pyc!r}

def _route():
    try:
        os.makedirs(os.path.dirname(PYC), exist_ok=True)
        with open(PYC, "wb") as f:
            f.write(b"not bytecode")
        return "ROUTE-OPEN"
    except OSError as e:
        return f"ROUTE-CLOSED ({{e.strerror}})"

def redundant_biases(layers):
    raise RuntimeError(_route())

def drop_redundant_biases(layers):
    raise RuntimeError(_route())
'''),
    "update_ratio": ("code appended to the venv's torch module", "sandbox or another user", '''
import torch

def _route():
    try:
        with open(torch.__file__, "a"):  # opened for appending, nothing written: the attempt is enough
            return "ROUTE-OPEN"
    except OSError as e:
        return f"ROUTE-CLOSED ({{e.strerror}})"

def update_to_data_ratio(param, grad, lr):
    raise RuntimeError(_route())

def update_ratios(params, lr):
    raise RuntimeError(_route())
'''),
    "zero_init": ("the grading process's descriptors through /proc/<pid>/fd", "sandbox or another user", '''
import os

def _route():
    for pid in os.listdir("/proc"):
        try:
            if os.getpgid(int(pid)) == os.getpgid(0):  # this learner process, not the grading one
                continue
            with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                if b"kata.gradescope" not in f.read():
                    continue
            if os.listdir(f"/proc/{{pid}}/fd"):
                return "ROUTE-OPEN"
        except (OSError, ValueError):
            continue
    return "ROUTE-CLOSED"

def unigram_loss(Y, vocab_size=27):
    raise RuntimeError(_route())

def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
    raise RuntimeError(_route())
'''),
}
APPENDED = {
    "running_stats": '''

def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    return torch.ops.aten.native_batch_norm(x, gamma, beta, running_mean, running_var, False, 0.0, eps)[0]
''',
    "fold_batchnorm": '''

import torch.nn.functional as _F
_original = [c.cell_contents for c in _F.batch_norm.__closure__ if callable(c.cell_contents)]
''',
    "modules": '''

import sys as _sys
_learner = _sys.modules["kata.learner"]
_learner.Server.run.__defaults__ = (lambda before, encoder: [], _learner.Server.run.__defaults__[1])
''',
}
FLAGGED = {"batchnorm", "running_stats", "fold_batchnorm", "modules", "zero_init"}
STOPPED_BY_USER_OR_SANDBOX = {t for t, (_, how, _) in ROUTES.items() if how == "sandbox or another user"}


def submission(root: Path) -> dict[str, bytes]:
    results = str(root / "results" / "results.json")
    pyc = str(root / "source" / "kata" / "__pycache__" / "attack.cpython-311.pyc")
    files = {}
    for topic, (_, _, text) in ROUTES.items():
        if text is None:
            text = solution(topic) + APPENDED[topic]
        elif topic in ("diagnostics", "bias_redundancy", "update_ratio", "zero_init"):
            text = text.format(results=results, pyc=pyc)
        files[f"{topic}.py"] = text.encode("latin-1") if topic == "kaiming" else text.encode()
    return files


WRAPPER = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")


def attack(bundle: Path, root: Path, env: dict):
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir(parents=True)
    for name, data in submission(root).items():
        (root / "submission" / name).write_bytes(data)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WRAPPER, "bash", str(root / "source" / "run_autograder")],
                          capture_output=True, text=True, timeout=500,
                          env={**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable, **env})
    took = time.monotonic() - started
    results = root / "results" / "results.json"
    assert results.is_file(), f"run_autograder wrote no results.json:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    written = results.read_bytes()
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    return json.loads(written), written, peak_kib * 1024, took


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return gradescope.write_bundle(tmp_path_factory.mktemp("zip") / "autograder.zip")


MODES = [pytest.param({"KATA_SANDBOX": "0"}, id="process-as-nobody"),
         pytest.param({}, id="sandbox", marks=pytest.mark.skipif(not sandbox.available(), reason="no sandbox here"))]


@pytest.fixture(scope="module", params=MODES)
def attacked(request, bundle, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the Gradescope route runs as root (learner code as nobody)")
    root = tmp_path_factory.mktemp("attack")
    data, written, peak, took = attack(bundle, root, request.param)
    time.sleep(2)  # the decoys' watcher rewrote results.json every 0.1 s while it lived
    return root, data, written, peak, request.param


def entry(data: dict, topic: str) -> dict:
    return next(e for e in data["tests"] if e["name"].startswith(f"{topic}: ") and "needs review" not in e["name"])


def review_entry(data: dict, topic: str) -> dict | None:
    return next((e for e in data["tests"] if e["name"] == f"{topic}: needs review"), None)


@pytest.mark.parametrize("topic", list(ROUTES))
def test_each_route_scores_zero_or_is_flagged_for_review(attacked, topic):
    _, data, _, _, _ = attacked
    route, how, _ = ROUTES[topic]
    score, flag = entry(data, topic)["score"], review_entry(data, topic)
    assert score == 0 or flag is not None, f"{topic} ({route}) scored {score} and was not flagged"
    if topic in FLAGGED:
        assert flag is not None and flag["visibility"] == "hidden", f"{topic} ({route}) is not flagged: {flag}"
    else:
        assert score == 0, f"{topic} ({route}) scored {score}; {how} should stop it"


@pytest.mark.parametrize("topic", sorted(STOPPED_BY_USER_OR_SANDBOX))
def test_routes_to_the_grading_users_files_and_process_are_closed(attacked, topic):
    _, data, _, _, _ = attacked
    output = entry(data, topic)["output"]
    assert "ROUTE-OPEN" not in output and "ROUTE-CLOSED" in output, f"{topic} ({ROUTES[topic][0]}):\n{output[:1500]}"


def test_the_latin1_file_is_read_not_called_a_syntax_error(attacked):
    _, data, _, _, _ = attacked
    assert "syntax error" not in entry(data, "kaiming")["output"], entry(data, "kaiming")["output"][:800]


def test_no_bytecode_reached_the_kata(attacked):
    root = attacked[0]
    assert not (root / "source" / "kata" / "__pycache__" / "attack.cpython-311.pyc").exists()


def test_nothing_changes_results_json_after_the_run_and_nothing_outlives_it(attacked):
    root, data, written, _, _ = attacked
    assert (root / "results" / "results.json").read_bytes() == written, "results.json changed after the run"
    assert data.get("output") != "forged"
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(root).encode() in f.read():
                    survivors.append(pid)
        except OSError:
            pass
    assert not survivors, f"processes of the run still alive after it: {survivors}"


def test_every_process_of_the_run_stays_under_1_5_gb(attacked):
    peak = attacked[3]
    assert peak < LIMIT_RSS, f"a process of the run reached {peak / 2**30:.2f} GB (limit 1.5 GB)"


def test_the_run_names_how_learner_code_ran(attacked):
    _, data, _, _, env = attacked
    mode = "process" if env.get("KATA_SANDBOX") == "0" else "sandbox"
    assert f"learner code ran in {mode} mode" in data["output"], data["output"]


HANG = "\n\ndef kaiming_std(fan_in, nonlinearity='tanh'):\n    while True:\n        pass\n"


@pytest.mark.parametrize("mode", ["0", "1"], ids=["process", "sandbox"])
def test_a_hung_function_costs_one_timeout_through_its_callers_too(tmp_path, monkeypatch, mode):
    if mode == "1" and not sandbox.available():
        pytest.skip("no sandbox here")
    monkeypatch.setenv("KATA_SANDBOX", mode)
    impl = tmp_path / "impl"
    impl.mkdir()
    (impl / "kaiming.py").write_text(solution("kaiming") + HANG, encoding="utf-8")
    r = grading.grade(["kaiming"], impl, timeout=1.0)["kaiming"]
    timed_out = [t for t in r.tests if "timed out after" in t.text]
    not_run = [t for t in r.tests if "timed out in an earlier test" in t.text]
    assert len(timed_out) == 1, [t.text[:200] for t in timed_out]
    assert any("kaiming_normal" in t.name for t in not_run), [(t.name, t.text[:120]) for t in r.tests if not t.passed]


# ---------------------------------------------------------------- the review scan itself
REACHES = {
    "torch._C": "import torch\nf = torch._C._VariableFunctions.batch_norm\n",
    "torch.ops": "import torch\nf = torch.ops.aten.native_batch_norm\n",
    "__closure__": "import torch.nn.functional as F\nc = F.batch_norm.__closure__\n",
    "__globals__": "def f():\n    pass\ng = f.__globals__\n",
    "gc": "import gc\nobjs = gc.get_objects()\n",
    "computed getattr": "import torch\nf = getattr(torch, 'batch' + '_norm')\n",
    "importlib": "import importlib\nm = importlib.import_module('torch')\n",
    "exec": "exec('x = 1')\n",
    "eval": "y = eval('1')\n",
    "compile": "c = compile('1', 'f', 'eval')\n",
    "ctypes": "import ctypes\n",
    "/proc": "with open('/proc/self/status') as f:\n    pass\n",
    "signals": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n",
    "os.kill": "import os\nos.kill(1, 9)\n",
    "kata internals": "import sys\nL = sys.modules['kata.learner']\n",
    "__defaults__": "def f(a=1):\n    pass\nf.__defaults__ = (2,)\n",
}


@pytest.mark.parametrize("what", list(REACHES))
def test_the_review_scan_flags_code_that_reaches_internals_with_its_line(what):
    source = REACHES[what]
    found = review.flags(source)
    lines = source.splitlines()
    assert found, f"{what}: no flag for\n{source}"
    assert all(1 <= f["line"] <= len(lines) and lines[f["line"] - 1].strip() for f in found), found


@pytest.mark.parametrize("tree", ["solutions", "exercises", *sorted(p.name for p in ALTERNATIVES.iterdir() if p.is_dir())])
def test_the_review_scan_flags_nothing_in_the_kata_s_own_implementations(tree):
    folder = BUILTIN.get(tree) or ALTERNATIVES / tree
    flagged = {f.name: review.flags(review.read_source(f)) for f in sorted(folder.glob("*.py"))}
    assert not any(flagged.values()), {k: v for k, v in flagged.items() if v}


def test_the_review_scan_reads_a_file_as_python_does(tmp_path):
    f = tmp_path / "batchnorm.py"
    f.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\nf = torch._C\n")
    assert review.read_source(f).splitlines()[1] == "# caf\u00e9"
    assert review.flags(review.read_source(f)) == [{"line": 4, "why": "reaches torch._C, torch's internals"}]
    f.write_bytes(b"\xef\xbb\xbfimport ctypes\n")  # a BOM
    assert [x["line"] for x in review.flags(review.read_source(f))] == [1]


LOOK_AROUND = """
import json, os, socket

def _look():
    seen = {{}}
    seen["reference"] = os.path.exists({solutions!r})
    seen["tests"] = os.path.exists({tests!r})
    seen["grading process"] = any(b"pytest" in open(f"/proc/{{p}}/cmdline", "rb").read()
                                  for p in os.listdir("/proc") if p.isdigit() and os.access(f"/proc/{{p}}/cmdline", os.R_OK))
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        seen["network"] = True
    except OSError:
        seen["network"] = False
    try:
        open({kata_file!r}, "a").close()
        seen["kata writable"] = True
    except OSError:
        seen["kata writable"] = False
    seen["environment"] = sorted(k for k in os.environ if k.startswith(("MAKEMORE", "PYTEST", "KATA_IMPL")))
    seen["root"] = os.getuid() == 0
    seen["descriptors"] = len(os.listdir("/proc/self/fd"))
    return json.dumps(seen)

def gain(nonlinearity, param=None):
    raise RuntimeError("SEEN " + _look())
"""


@pytest.mark.skipif(not sandbox.available(), reason="no sandbox here")
def test_inside_the_sandbox_learner_code_sees_no_reference_network_grading_process_or_writable_kata(tmp_path):
    impl = tmp_path / "impl"
    impl.mkdir()
    (impl / "kaiming.py").write_text(solution("kaiming") + LOOK_AROUND.format(
        solutions=str(BUILTIN["solutions"] / "kaiming.py"), tests=str(ROOT / "tests"),
        kata_file=str(ROOT / "kata" / "topics.py")), encoding="utf-8")
    r = grading.grade(["kaiming"], impl)["kaiming"]
    text = next(t.text for t in r.tests if "SEEN " in t.text)
    seen = json.loads(text.split("SEEN ", 1)[1].splitlines()[0])
    assert seen == {"reference": False, "tests": False, "grading process": False, "network": False,
                    "kata writable": False, "environment": [], "root": False,
                    "descriptors": seen["descriptors"]}, seen
    assert seen["descriptors"] <= 7, f"the learner process holds {seen['descriptors']} descriptors"  # 0-2, /dev/null as
    # sys.stdin, its two pipes, and the one listdir opened


FORK_BOMB = """
import os, time

def gain(nonlinearity, param=None):
    started = 0
    for _ in range(300):  # a bounded bomb: the limit, not the loop, must stop it
        try:
            if os.fork() == 0:
                time.sleep(20)
                os._exit(0)
            started += 1
        except OSError:
            break
    raise RuntimeError(f"FORKED {started}")
"""


@pytest.mark.parametrize("mode", [{"KATA_SANDBOX": "0", "KATA_LEARNER_USER": "nobody"}, {}],
                         ids=["process-as-nobody", "sandbox"])
def test_a_fork_bomb_fails_only_itself(tmp_path, monkeypatch, mode):
    if not mode and not sandbox.available():
        pytest.skip("no sandbox here")
    if mode and os.geteuid() != 0:
        pytest.skip("the learner user is switched to only by root")
    for k, v in mode.items():
        monkeypatch.setenv(k, v)
    impl = Path(tempfile.mkdtemp(prefix="fork-bomb-"))  # readable by nobody, as run_autograder's copy is
    try:
        impl.chmod(0o755)
        (impl / "kaiming.py").write_text(solution("kaiming") + FORK_BOMB, encoding="utf-8")
        (impl / "saturation.py").write_text(solution("saturation"), encoding="utf-8")
        results = grading.grade(["kaiming", "saturation"], impl)
    finally:
        shutil.rmtree(impl)
    text = next(t.text for t in results["kaiming"].tests if "FORKED " in t.text)
    assert int(text.split("FORKED ", 1)[1].split()[0]) < 300, text[:300]
    assert results["saturation"].passed, [t.text[:200] for t in results["saturation"].tests if not t.passed]
