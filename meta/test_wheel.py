"""Colab without a clone: the wheel carries what check() needs (the tests, hints, notes, the data
loader). Built here, installed into a folder outside the repository, and used from a notebook
kernel whose only kata is that folder's."""
import subprocess
import sys

import pytest

from kata.loader import ROOT

pytestmark = pytest.mark.timeout(400)

CELLS = [
    "import kata, grader\nprint('KATA', kata.__file__)",
    '''import torch
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta''',
    '''class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out
    def parameters(self):
        return []''',
    "from grader import check, hint, explain\nresult = check('batchnorm', batchnorm_forward)\nprint('VERDICT', bool(result), result.score)",
    "missing = check('modules', Tanh)\nprint('MODULES', bool(missing))",
    "hint('batchnorm', level=1)",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, built from this clone and installed (without its dependencies, which this
    machine has) into a folder outside it."""
    dist, target = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist), str(ROOT)],
                           check=True, capture_output=True, text=True, timeout=300)
    wheel = next(dist.glob("*.whl"))
    log = built.stdout + built.stderr
    assert "absent from the `packages` configuration" not in log, "setuptools warns about the packages list:\n" + \
        "\n".join(line for line in log.splitlines() if "absent" in line)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return wheel, target


def test_wheel_carries_the_tests_hints_notes_and_data_loader(installed):
    _, target = installed
    for rel in ("kata/tests/test_batchnorm.py", "kata/tests/test_zero_init.py", "kata/hints/batchnorm.toml",
                "kata/notes/batchnorm.md", "kata/data.py", "kata/learner.py", "grader.py"):
        assert (target / rel).is_file(), rel
    assert not (target / "solutions").exists() and not (target / "exercises").exists()


def test_wheel_outside_the_repo_checks_a_function_and_a_class_defined_in_notebook_cells(installed, tmp_path,
                                                                                          monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    _, target = installed
    monkeypatch.setenv("PYTHONPATH", str(target))  # the kernel's only kata: the installed wheel
    monkeypatch.delenv("KATA_IMPL", raising=False)
    monkeypatch.delenv("KATA_STATE", raising=False)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    work = tmp_path / "colab"
    work.mkdir()
    nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()
    text = {k: "".join(o.get("text", "") for o in cell.outputs) for k, cell in enumerate(notebook.cells)}
    assert f"KATA {target}" in text[0], text[0]
    assert "VERDICT True 15" in text[3] and "all 18 tests pass" in text[3], text[3]
    assert "MODULES False" in text[4] and "define Linear and BatchNorm1d in a cell" in text[4], text[4]
    assert "batchnorm, hint 1 of 3" in text[5] and 'hint("batchnorm") again' in text[5]
    assert (work / ".kata" / "hints.json").is_file(), "hint progress belongs beside the notebook"
    assert not (target / ".kata").exists(), "hint progress must not live in the installed package"
    assert not any(o.get("output_type") == "error" for cell in notebook.cells for o in cell.outputs)
