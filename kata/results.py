"""What grading produces, as data: one Record per test, one TopicResult per topic, and the
topic's Status. No torch and no pytest here: the scorecard, hints and notes load fast."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from kata import topics
from kata.failure import Kind


@dataclass
class Record:
    """One test's outcome, as the grader, the scorecard and the catalog read it."""
    id: str                     # pytest node id
    topic: str
    passed: bool
    kind: str | None = None     # a kata.failure.Kind value when it failed
    mistake: str | None = None  # a catalogued mistake a test named itself (the shortcut it read in the source)
    text: str = ""              # the lesson: the failure's message and the learner's frames
    matches: list | None = None  # catalogued mistakes whose replay gives this failure's values (kata/diagnose.py);
    #                              None: not diagnosed (a pass, a timeout, a crash)

    @property
    def name(self) -> str:
        return self.id.split("::", 1)[-1]


class Status(str, Enum):
    PASSED = "passed"
    FAILING = "failing"
    NOT_STARTED = "not started"
    TIMED_OUT = "timed out"
    SYNTAX_ERROR = "syntax error"
    MISSING = "missing"
    USES_SOLUTIONS = "uses solutions"
    ERROR = "error"        # the tests could not run: nothing the learner can fix
    NO_TESTS = "no tests"


@dataclass
class Cause:
    """A catalogued mistake (or several that behave alike on these tests: "one of") that explains
    some of a topic's failing tests, by the learner's values matching its replay."""
    mistakes: list            # mistake ids; more than one when they cannot be told apart here
    tests: list               # the names of the failing tests it explains

    def as_dict(self) -> dict:
        return {"mistakes": list(self.mistakes), "tests": list(self.tests)}


@dataclass
class TopicResult:
    topic: topics.Topic
    tests: list = field(default_factory=list)  # Record, in run order
    problem: str = ""          # no tests, a test file that cannot be collected
    syntax_error: str = ""     # "FILE:LINE: syntax error: ..." from the learner's file
    missing: str = ""          # the learner's file does not exist
    uses_solutions: str = ""   # "FILE:LINE uses solutions/" when the learner's file does
    causes: list = field(default_factory=list)  # Cause, most tests first (kata/diagnose.py)
    review: list = field(default_factory=list)  # {"line": int, "why": str}: flagged for an instructor

    @property
    def n_passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and self.n_passed == len(self.tests) and not self.problem \
            and not self.uses_solutions and not self.syntax_error  # a file Python cannot compile never passes

    @property
    def status(self) -> Status:
        if self.problem:
            return Status.NO_TESTS if not self.tests else Status.ERROR
        if self.missing:
            return Status.MISSING
        if self.syntax_error:
            return Status.SYNTAX_ERROR
        if self.uses_solutions:
            return Status.USES_SOLUTIONS
        if self.passed:
            return Status.PASSED
        failed = [t for t in self.tests if not t.passed]
        if any(t.kind == Kind.TIMEOUT for t in failed):
            return Status.TIMED_OUT
        if not self.n_passed and failed and all(t.kind == Kind.NOT_IMPLEMENTED for t in failed):
            return Status.NOT_STARTED
        return Status.FAILING

    @property
    def score(self) -> int:
        return self.topic.points if self.passed else 0

    @property
    def max_score(self) -> int:
        return self.topic.points

    def as_dict(self) -> dict:
        return {"topic": self.topic.name, "tests": [asdict(t) for t in self.tests], "problem": self.problem,
                "syntax_error": self.syntax_error, "missing": self.missing, "uses_solutions": self.uses_solutions,
                "causes": [c.as_dict() for c in self.causes], "review": list(self.review)}

    @classmethod
    def from_dict(cls, data: dict) -> "TopicResult":
        return cls(topics.get(data["topic"]), [Record(**t) for t in data["tests"]], data["problem"],
                   data["syntax_error"], data["missing"], data["uses_solutions"],
                   [Cause(**c) for c in data.get("causes", [])], list(data.get("review", [])))


