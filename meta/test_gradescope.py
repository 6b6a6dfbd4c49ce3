"""The Gradescope bundle, tried as Gradescope runs it: unzipped into <root>/source, a submission
in <root>/submission, `run_autograder` with AUTOGRADER_ROOT=<root>, results in
<root>/results/results.json. setup.sh is not run (it installs what this machine already has).
Gradescope's Docker has no user namespaces, so no sandbox: KATA_SANDBOX=0 runs that route here;
the sandboxed route is tried too where this machine has one."""
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from kata import gradescope, sandbox, topics
from kata.loader import BUILTIN, ROOT

pytestmark = pytest.mark.timeout(300)

TAMPER = '''
import kata, pathlib
_test = pathlib.Path(kata.__file__).parent.parent / "tests" / "test_batchnorm.py"
try:
    _test.write_text("def test_batchnorm_forward_is_fine():\\n    pass\\n")  # every batchnorm test gone
except OSError as e:
    print("could not tamper:", e)
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return gradescope.write_bundle(tmp_path_factory.mktemp("zip") / "autograder.zip")


def autograde(bundle: Path, root: Path, submission_files: dict, env=None) -> dict:
    """Unzip, submit, run run_autograder; the results.json it wrote."""
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):
        (root / "source" / name).chmod(0o755)
    (root / "submission" / "nested").mkdir(parents=True)
    for name, text in submission_files.items():
        (root / "submission" / "nested" / name).write_text(text, encoding="utf-8")
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                          timeout=280, env={**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable,
                                            **(env or {})})
    results = root / "results" / "results.json"
    assert results.is_file(), done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(results.read_text())


def files_of(folder: Path) -> dict:
    return {f"{t}.py": (folder / f"{t}.py").read_text(encoding="utf-8") for t in topics.NAMES}


def test_write_bundle_has_setup_run_autograder_and_a_manifest_of_the_kata(bundle):
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MANIFEST.json"))
        mode = z.getinfo("run_autograder").external_attr >> 16
        run_autograder = z.read("run_autograder").decode()
    assert {"setup.sh", "run_autograder", "MANIFEST.json", "grader.py", "kata/remote.py",
            "tests/test_batchnorm.py"} <= names
    assert mode & 0o111, "run_autograder must be executable"
    assert set(manifest) == names - {"setup.sh", "run_autograder", "MANIFEST.json"}
    assert not any("exercises/" in n for n in names), "a learner's files stay out of the bundle"
    # the reference travels for diagnosis, readable by root only once unzipped
    assert any(n.startswith("solutions/") for n in names) and "chmod -R go-rwx solutions" in run_autograder


MODES = [pytest.param({"KATA_SANDBOX": "0"}, id="process"),
         pytest.param({}, id="sandbox", marks=pytest.mark.skipif(not sandbox.available(), reason="no sandbox here"))]


@pytest.mark.parametrize("mode", MODES)
def test_run_autograder_gives_full_marks_to_a_correct_submission(bundle, tmp_path, mode):
    data = autograde(bundle, tmp_path / "ag", files_of(ROOT / "meta" / "alternatives" / "plain"), env=mode)
    assert data["score"] == data["max_score"] == 100, json.dumps(data, indent=1)[:2000]
    assert [e["name"].split(":")[0] for e in data["tests"]] == list(topics.NAMES)
    assert all(e["status"] == "passed" for e in data["tests"])


def test_run_autograder_scores_the_stubs_zero_and_names_a_missing_file(bundle, tmp_path):
    files = files_of(BUILTIN["exercises"])
    del files["zero_init.py"]
    data = autograde(bundle, tmp_path / "ag", files)
    assert data["score"] == 0 and "zero_init.py" in data["output"]
    assert all(e["status"] == "failed" for e in data["tests"])


def test_run_autograder_reports_tampering_with_its_files_as_a_failure(bundle, tmp_path):
    files = files_of(BUILTIN["solutions"])
    files["batchnorm.py"] = TAMPER + "\ndef batchnorm_forward(x, gamma, beta, eps=1e-5):\n    return x\n"
    data = autograde(bundle, tmp_path / "ag", files, env={"KATA_LEARNER_USER": "", "KATA_SANDBOX": "0"})  # no
    # unprivileged user, no sandbox: learner code can write the kata's files, and the change is seen
    assert data["score"] == 0 and "tests/test_batchnorm.py" in data["output"], data["output"]
    assert "changed while the submission's code ran" in data["output"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("id") is None, reason="the unprivileged learner needs root")
@pytest.mark.parametrize("mode", MODES)
def test_run_autograder_as_root_runs_learner_code_as_nobody_so_it_cannot_tamper(bundle, tmp_path, mode):
    files = files_of(BUILTIN["solutions"])
    files["batchnorm.py"] = TAMPER + "\n" + files["batchnorm.py"]
    data = autograde(bundle, tmp_path / "ag", files, env=mode)
    assert "changed" not in data["output"], data["output"]
    assert data["score"] == 100, json.dumps(data, indent=1)[:1500]  # the attempt failed; the code is correct
    assert (tmp_path / "ag" / "source" / "tests" / "test_batchnorm.py").read_bytes() == \
        (ROOT / "tests" / "test_batchnorm.py").read_bytes()


HANGS = "def split_loss(forward, X, Y):\n    while True:\n        pass\n"


def test_run_autograder_writes_results_json_when_the_whole_run_passes_its_deadline(bundle, tmp_path):
    files = files_of(BUILTIN["solutions"])
    files["no_grad.py"] = HANGS
    started = time.monotonic()
    data = autograde(bundle, tmp_path / "ag", files, env={"KATA_RUN_DEADLINE": "2"})
    assert time.monotonic() - started < 60
    assert data["score"] == 0 and "did not finish within 2 s" in data["output"], data["output"]
    assert len(data["tests"]) == len(topics.NAMES)


@pytest.mark.skipif(os.geteuid() != 0, reason="the learner user is switched to only by root")
def test_a_learner_process_the_kata_cannot_start_is_the_graders_failure_not_the_learners(bundle, tmp_path):
    data = autograde(bundle, tmp_path / "ag", files_of(BUILTIN["solutions"]),
                     env={"KATA_SANDBOX": "0", "KATA_LEARNER_USER": "no-such-user-of-the-kata"})
    assert data["score"] == 0 and data["output"].startswith("the grader failed: "), data["output"][:500]
    done = subprocess.run([sys.executable, "grader.py", "batchnorm", "--impl", "solutions"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KATA_SANDBOX": "0", "KATA_LEARNER_USER": "no-such-user-of-the-kata"})
    assert done.returncode == 3 and "the grader failed" in done.stderr, (done.returncode, done.stderr[-800:])
