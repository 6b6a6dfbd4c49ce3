"""The mistake catalog and the stub check, run against the topic tests.

A mistake (kata/hints/<topic>.toml) is a patch that turns the reference into a realistic wrong
implementation. `check_topics` builds one folder per mistake (solutions/ with that patch applied)
and runs each tests/test_<topic>.py on its topic's folders, all in one pytest process
(`--impl-for topic=folder`, repeated), where each failure is diagnosed (kata/diagnose.py). Each
mistake must fail at least one test and, graded alone, be named as itself and nothing else in one
block (a combination: as exactly its two mistakes).

    python -m kata.catalog [TOPIC ...]      # the self-diagnosis table: every mistake, its causes, its blocks
    python -m kata.catalog --stubs          # the generated stubs must fail every topic test
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kata import generate, topics
from kata.loader import BUILTIN, ROOT
from kata.results import Record


@dataclass
class Verdict:
    """What a topic's tests did to one implementation folder."""
    passed: int = 0
    failed: list = field(default_factory=list)  # kata.results.Record of each failing test

    def text(self) -> str:
        return "\n".join(r.text for r in self.failed)


def apply(mistake: topics.Mistake, source: str) -> str:
    """The reference source with the mistake's patch applied; each `find` must occur exactly once."""
    for find, replace in mistake.patch:
        count = source.count(find)
        if count != 1:
            raise ValueError(f"{mistake.topic}/{mistake.id}: patch text occurs {count} times in "
                             f"solutions/{mistake.topic}.py, expected once: {find!r}")
        source = source.replace(find, replace)
    return source


def build(mistake: topics.Mistake, dest: Path) -> Path:
    """A copy of solutions/ with the mistake in its topic's file."""
    shutil.copytree(BUILTIN["solutions"], dest, ignore=shutil.ignore_patterns("__pycache__"))
    path = dest / f"{mistake.topic}.py"
    path.write_text(apply(mistake, path.read_text(encoding="utf-8")), encoding="utf-8")
    return dest


def run_tests(test_files, impl_dirs, workdir: Path, extra=(), topics_of=None) -> dict[str, Verdict]:
    """Run pytest on `test_files` for every folder in `impl_dirs` (one process); verdicts by folder
    name, from kata.plugin's records. topics_of: each folder's topic, when a folder is for its
    topic's tests only (--impl-for)."""
    report = workdir / "records.json"
    command = [sys.executable, "-m", "pytest", *map(str, test_files), "-q", "--tb=no", "-p", "no:cacheprovider",
               f"--kata-json={report}", f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), *extra]
    if topics_of is None:
        command += [f"--impl={folder}" for folder in impl_dirs]  # one token each: a bare path would count as a test path
    else:
        command += [f"--impl-for={t}={folder}" for t, folder in zip(topics_of, impl_dirs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if not report.is_file():
        raise RuntimeError(f"pytest wrote no records (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    names = [Path(d).name for d in impl_dirs]
    verdicts = {name: Verdict() for name in names}
    for record in map(lambda fields: Record(**fields), json.loads(report.read_text(encoding="utf-8"))):
        owner = names[0] if len(names) == 1 else _owner(record.name, names)
        if record.passed:
            verdicts[owner].passed += 1
        else:
            verdicts[owner].failed.append(record)
    return verdicts


def _owner(test_name: str, names: list[str]) -> str:
    """Which folder a parametrized test id belongs to (ids are '[<folder>]' or '[<folder>-...]' etc.)."""
    params = re.split(r"[\[\]-]", test_name)
    matches = [n for n in names if n in params]
    if len(matches) != 1:
        raise RuntimeError(f"cannot tell which implementation {test_name!r} ran")
    return matches[0]


def check_topics(names, workdir: Path) -> dict[str, dict[str, Verdict]]:
    """For each topic, a verdict per catalogued mistake, single or combination (keyed by mistake id). One pytest process
    for all of them (one torch import, not one per topic); each topic's tests run on that topic's
    mutants only."""
    plan = [(topic, m, build(m, workdir / f"{topic}_m{k:02d}"))
            for topic in names for k, m in enumerate(topics.catalogue(topic))]
    files = [ROOT / "tests" / f"test_{topic}.py" for topic in names]
    verdicts = run_tests(files, [d for _, _, d in plan], workdir, topics_of=[t for t, _, _ in plan])
    out: dict[str, dict[str, Verdict]] = {topic: {} for topic in names}
    for topic, m, d in plan:
        out[topic][m.id] = verdicts[d.name]
    return out


def check_stubs(workdir: Path) -> Verdict:
    """The generated stubs (not exercises/, which may hold learner work) against every topic test."""
    stubs = workdir / "stubs"
    generate.generate(stubs)
    return run_tests([ROOT / "tests"], [stubs], workdir)["stubs"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.catalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topics", nargs="*", metavar="TOPIC", help=f"some of: {', '.join(topics.NAMES)}")
    parser.add_argument("--stubs", action="store_true", help="check that the stubs fail every test")
    args = parser.parse_args(argv)
    unknown = [t for t in args.topics if t not in topics.NAMES]
    if unknown:
        parser.error(f"unknown topics {unknown}; topics are: {', '.join(topics.NAMES)}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.stubs:
            verdict = check_stubs(Path(tmp))
            print(f"stubs: {verdict.passed} topic tests passed (expected 0), {len(verdict.failed)} failed")
            return 1 if verdict.passed else 0
        rows = [self_diagnosis(topic, m, verdict)
                for topic, verdicts in check_topics(args.topics or list(topics.NAMES), Path(tmp)).items()
                for m, verdict in ((next(m for m in topics.catalogue(topic) if m.id == i), v)
                                   for i, v in verdicts.items())]
    for row in rows:
        print(row.line())
    for topic in args.topics or topics.NAMES:
        print(f"{topic:16} {len(topics.mistakes(topic)):4} single mistakes {len(topics.combinations(topic)):3} combinations")
    print(f"{'all':16} {sum(len(topics.mistakes(t)) for t in topics.NAMES):4} single mistakes "
          f"{sum(len(topics.combinations(t)) for t in topics.NAMES):3} combinations")
    good = sum(row.ok for row in rows)
    print(f"self-diagnosis: {good} of {len(rows)} catalogued mistakes ({100 * good / max(len(rows), 1):.0f}%) "
          "graded alone are named as themselves and nothing else, in one block")
    return 0 if good == len(rows) else 1


@dataclass
class Row:
    topic: str
    mistake: str
    failing: int
    passing: int
    named: list          # the causes' mistake ids, one list per cause
    blocks: int

    combines: tuple = ()  # a combination's parts
    alike: tuple = ()     # the mistakes declared indistinguishable from this one (same_as, both ways)

    @property
    def ok(self) -> bool:
        """A single mistake: named as itself (or "one of" it and a mistake declared the same),
        nothing else, in one block. A combination: exactly its parts named, nothing unexplained."""
        if not self.failing:
            return False
        if self.combines:
            named = [m for cause in self.named for m in cause]
            unexplained = self.blocks - len(self.named)
            return sorted(named) == sorted(self.combines) and unexplained == 0
        return len(self.named) == 1 and self.mistake in self.named[0] and self.blocks == 1 \
            and set(self.named[0]) <= {self.mistake, *self.alike}

    def line(self) -> str:
        named = " + ".join("one of " + "/".join(c) if len(c) > 1 else c[0] for c in self.named) or "nothing"
        return (f"{'ok ' if self.ok else 'BAD'} {self.topic}/{self.mistake}: {self.failing} failing, "
                f"{self.passing} passing, named: {named}, blocks: {self.blocks}")


def self_diagnosis(topic: str, mistake: topics.Mistake, verdict: Verdict) -> Row:
    """A mistake graded alone: the causes its failures get, and the blocks the report shows."""
    from kata import diagnose, scorecard
    from kata.results import TopicResult
    result = TopicResult(topics.get(topic), verdict.failed)
    result.causes = diagnose.causes(verdict.failed, topic)
    blocks = len(result.causes) + min(scorecard.SHOWN, len(scorecard.failure_groups(
        [r for r in verdict.failed if not any(r.name in c.tests for c in result.causes)])))
    alike = {m.id for m in topics.catalogue(topic) if m.same_as == mistake.id} | ({mistake.same_as} - {""})
    return Row(topic, mistake.id, len(verdict.failed), verdict.passed, [c.mistakes for c in result.causes], blocks,
               mistake.combines, tuple(alike))


if __name__ == "__main__":
    sys.exit(main())
