"""How a test fails, as data: the kind of failure and, when a test recognises one, the mistake.

The grader, the mistake catalog and the scorecard read these fields; nothing parses them back
out of the message text.
"""
from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    ASSERTION = "assertion"            # a check of the test did not hold
    NOT_IMPLEMENTED = "not_implemented"  # the stub's NotImplementedError: the topic is not started
    ERROR = "error"                    # learner code raised an exception
    TIMEOUT = "timeout"                # a call did not return within the limit
    CRASH = "crash"                    # learner code ended its process (os._exit, a segfault)
    ESCAPE = "escape"                  # sys.exit, KeyboardInterrupt, pytest.skip from learner code


class KataFailure(AssertionError):
    """A failed check; its message is the lesson, `mistake` the catalogued mistake it recognised."""

    def __init__(self, message: str, mistake: str | None = None, kind: Kind = Kind.ASSERTION):
        super().__init__(message)
        self.mistake = mistake
        self.kind = kind



class LearnerProcessFailure(BaseException):
    """The learner process timed out, crashed, or left a call early (sys.exit, pytest.skip).

    A BaseException, not an Exception: a test that catches `Exception` around a learner call (to
    teach about the wrong exception type) must not swallow it."""

    def __init__(self, message: str, kind: Kind):
        super().__init__(message)
        self.kind = kind
        self.mistake = None
