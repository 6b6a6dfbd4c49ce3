"""What a topic is made of, and what the repository may point at.

A topic is written in five files, its reference (solutions/), its tests (tests/), its catalog of
hints and mistakes (kata/hints/), its notes (kata/notes/) and one registry entry (kata/topics.py),
plus three independent implementations (meta/alternatives/). Everything else is generated from
those (exercises/ by `python -m kata generate`, the workbook's topic cells by
`python -m kata.workbook`) or derived at run time (the pytest markers, the scorecard, the Gradescope
entries, the readiness checks' fallback). The first test lists whatever a topic still lacks.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kata import REPOSITORY, facts, generate, readiness, topics, workbook
from kata.loader import ROOT

ALTERNATIVES = ("plain", "terse", "module")


def written_files(topic: str) -> dict[str, Path]:
    """The files a topic is written in, by what each one is."""
    files = {"reference": ROOT / "solutions" / f"{topic}.py", "tests": ROOT / "tests" / f"test_{topic}.py",
             "catalog (hints and mistakes)": ROOT / "kata" / "hints" / f"{topic}.toml",
             "notes (viewer questions)": ROOT / "kata" / "notes" / f"{topic}.md"}
    files.update({f"alternative tree {name}": ROOT / "meta" / "alternatives" / name / f"{topic}.py"
                  for name in ALTERNATIVES})
    return files


def missing(topic: str) -> list[str]:
    """What `topic` still lacks, one line each, with the file to write or the command to run."""
    out = [f"{what}: write {path.relative_to(ROOT)}" for what, path in written_files(topic).items()
           if not path.is_file()]
    if topic not in topics.NAMES:
        out.append(f"registry entry: add Topic({topic!r}, ...) to kata/topics.py's TOPICS")
        return out
    catalog = topics.mistakes(topic), topics.hints(topic)
    if written_files(topic)["catalog (hints and mistakes)"].is_file() and not all(catalog):
        out.append(f"catalog: kata/hints/{topic}.toml needs at least one hint and one mistake")
    if (ROOT / "solutions" / f"{topic}.py").is_file():
        exercise = ROOT / "exercises" / f"{topic}.py"
        if not exercise.is_file() or exercise.read_text(encoding="utf-8") != generate.expected(topic):
            out.append(f"generated stub: run python -m kata generate (exercises/{topic}.py)")
    return out


def topics_on_disk() -> set[str]:
    """Every topic name some file stands for: a reference, a test file, a catalog, notes."""
    names = {p.stem for p in (ROOT / "solutions").glob("*.py") if not p.stem.startswith("_")}
    names |= {p.stem.removeprefix("test_") for p in (ROOT / "tests").glob("test_*.py")}
    names |= {p.stem for p in (ROOT / "kata" / "hints").glob("*.toml")}
    return names | {p.stem for p in (ROOT / "kata" / "notes").glob("*.md")}


def test_every_topic_has_the_files_it_is_written_in_and_nothing_else_is_needed():
    lacking = {topic: missing(topic) for topic in sorted(set(topics.NAMES) | topics_on_disk())}
    assert not any(lacking.values()), "\n".join(f"{t}: {line}" for t, lines in lacking.items() for line in lines)


def test_a_new_topic_is_told_its_five_files_and_three_alternatives():
    """What `missing` says for a 13th topic that nothing has been written for yet."""
    lines = missing("label_smoothing")
    assert lines == [
        "reference: write solutions/label_smoothing.py", "tests: write tests/test_label_smoothing.py",
        "catalog (hints and mistakes): write kata/hints/label_smoothing.toml",
        "notes (viewer questions): write kata/notes/label_smoothing.md",
        *(f"alternative tree {n}: write meta/alternatives/{n}/label_smoothing.py" for n in ALTERNATIVES),
        "registry entry: add Topic('label_smoothing', ...) to kata/topics.py's TOPICS"], lines


def test_a_topic_without_workbook_cells_gets_them_from_the_generator():
    """The workbook's spec, stub and check cells of a topic are written, not hand-kept: take a
    topic's out of the cells and the generator writes them again, after the previous topic's
    experiments and before the next topic's spec."""
    cells = workbook.read_cells(workbook.SOURCE.read_text(encoding="utf-8"))
    kept = [c for c in cells if c["metadata"].get("kata", {}).get("topic") != "running_stats"]
    assert len(kept) == len(cells) - 3
    ids = [c["metadata"].get("id") for c in workbook.refresh(kept)]
    at = ids.index("running_stats-spec")
    assert ids[at:at + 3] == ["running_stats-spec", "running_stats-code", "running_stats-check"]
    assert ids.index("batchnorm-run") < at < ids.index("modules-spec")
    fresh = {c["metadata"]["id"]: c["source"] for c in workbook.refresh(kept)}
    assert fresh["running_stats-check"] == workbook.check_call("running_stats")
    assert "def ema_update(" in fresh["running_stats-code"]


def test_a_topic_without_a_readiness_check_is_ready_once_defined():
    assert set(readiness.CHECKS) <= set(topics.NAMES)
    assert readiness.problem("no_such_topic", object()) is None


# ---------------------------------------------------------------- one home for each fact


def test_the_repository_address_is_kata_repository_in_the_readme_and_the_workbook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'pip install -q "git+{REPOSITORY}"' in readme, "the README's Colab cell installs from kata.REPOSITORY"
    setup = next(c["source"] for c in workbook.read_cells(workbook.SOURCE.read_text(encoding="utf-8"))
                 if c["metadata"].get("id") == "setup")
    assert f'"git+{REPOSITORY}"' in setup
    assert len(re.findall(r"git\+", setup)) == 1


def lecture_numbers() -> list[str]:
    """The lecture's printed and measured numbers in kata/facts.py, as a text would retype them."""
    values = [facts.SEED, *facts.PARAMETERS.values(), facts.INIT_LOSS_TRAIN_SET, facts.BN_EMA_VAL,
              *facts.INIT_LOSS.values(), *facts.SCALED_INIT_LOSS.values(), *facts.UNIGRAM_LOSS.values(),
              facts.ZERO_INIT_MEASURED["train"], facts.ZERO_INIT_MEASURED["val"], facts.HPREACT_STD["original"],
              facts.HPREACT_STD["kaiming"], *(v for pair in facts.LOSS_LOG.values() for v in pair),
              *(facts.DEEP_NET[k] for k in ("step0_loss", "train", "val"))]
    texts = []
    for v in values:
        texts += [f"{v:,}", str(v)] if isinstance(v, int) else [f"{v:.4f}", repr(v)] if v >= 2 else [repr(v)]
    return sorted(set(texts))


def test_the_workbook_takes_the_lectures_numbers_from_facts():
    """Its hand-written cells print facts.X; the generated ones quote the reference's docstrings."""
    for cell in workbook.read_cells(workbook.SOURCE.read_text(encoding="utf-8")):
        if cell["metadata"].get("kata", {}).get("kind") in workbook.GENERATED:
            continue
        for number in lecture_numbers():
            assert not re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", cell["source"]), \
                f"the workbook's {cell['metadata'].get('id')} cell retypes {number}: take it from kata/facts.py"


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


@pytest.mark.parametrize("outside", ["CONTRACT.md", "../shared", "check_contract"])
def test_nothing_shipped_points_outside_the_repository(outside):
    """Only .ci/run and the meta tests may use ../shared, where it is there."""
    shipped = tracked("README.md", "kata", "tests", "solutions", "exercises", "notebooks", "grader.py",
                      "pyproject.toml", "benchmarks")
    naming = [str(p.relative_to(ROOT)) for p in shipped if outside in p.read_text(encoding="utf-8", errors="replace")]
    assert not naming, f"{', '.join(naming)} name {outside}, which a learner's clone does not have"
