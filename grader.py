"""The kata's grader: a scorecard of every topic, the failing tests of one, hints, watch, reset.

    python grader.py                      # scorecard of every topic, and what to do next
    python grader.py batchnorm            # one topic: known mistakes explained, failing tests in full
    python grader.py --watch              # re-grade each topic as you save its file
    python grader.py --hint batchnorm     # the next hint: concept, then formula, then near-solution
    python grader.py --hint batchnorm --level 1   # a level again
    python grader.py --explain batchnorm  # answers to viewer questions on the topic
    python grader.py --reset batchnorm    # back up your file under .kata/backups/, put the stub back
    python grader.py --restore batchnorm  # bring back the latest backup (backing up the current file)
    python grader.py --compare batchnorm  # once it passes: your code beside the reference
    python grader.py --list               # topics in order, with points and status
    python grader.py --impl solutions --json results.json   # Gradescope's results.json
    python grader.py --gradescope-bundle autograder.zip     # the autograder for a Gradescope assignment
    python grader.py --class SUBMISSIONS --out class-report  # grade a class: grades.csv, results.json, index.html

Exit status: 0 when every selected topic passes, 1 when any fails, 2 for a usage error.
In a notebook: `from grader import check, hint, explain; check("batchnorm", batchnorm_forward)`.

The tests run under pytest in this process and call your code in a learner process of its own
(kata/remote.py), so nothing your code does (os._exit, an infinite loop, pytest.skip, patching
pytest) can pass a test or drop a topic from the scorecard.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys

from kata import topics
from kata.loader import ImplNotFound, resolve, show_path
from kata.notebook import Check, check, explain, hint  # noqa: F401 - the notebook's entry points

class UsageError(Exception):
    """Exit status 2, with a one-line message."""


def grade(selected, impl, out, timeout: float, rows: bool = True):
    """Grade `selected` topics (a progress line while the tests run), print their rows, return the results."""
    from kata import sandbox
    sandbox.prestart()  # the sandbox imports torch while this process does
    from kata import grading, scorecard
    out.line(f"grading {show_path(impl)} ({len(selected)} topic{'s' * (len(selected) != 1)})")
    results = grading.grade(selected, impl, timeout=timeout,
                            on_record=lambda record: out.progress(f"     running {record.topic} ..."))
    out.clear()
    if rows:
        out.line(out.bold(scorecard.HEADER))
        for name in selected:
            out.line(scorecard.row(out, results[name]))
    return results


def main(argv=None) -> int:
    from kata import scorecard
    out = scorecard.Out()
    try:
        args = parse(argv)
        selected = [t for t in topics.NAMES if t in {_topic(t) for t in args.topics}] or list(topics.NAMES)
        for flag in ("hint", "explain", "reset", "restore", "compare"):
            if getattr(args, flag):
                _topic(getattr(args, flag))
        if args.level is not None and not args.hint:
            raise UsageError("--level goes with --hint TOPIC")
        try:
            impl = resolve(args.impl)
        except ImplNotFound as e:
            raise UsageError(str(e)) from None
        return run(args, selected, impl, out)
    except UsageError as e:
        print(f"grader.py: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # kata.grading.GradingError: the tests could not run at all
        if type(e).__name__ == "GraderFailure":  # the kata's own failure, never the learner's
            print(f"grader.py: error: {e}", file=sys.stderr)
            return 3
        if type(e).__name__ != "GradingError":
            raise
        print(f"grader.py: error: {str(e).removeprefix('ERROR: ')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out.line("\ninterrupted.")
        return 130
    except BrokenPipeError:  # `python grader.py | head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run(args, selected, impl, out) -> int:
    from kata import hintstate, reset, scorecard
    if args.hint:
        try:
            lines = hintstate.hint_text(args.hint, args.level)
        except hintstate.NoSuchLevel as e:
            raise UsageError(str(e)) from None
        for text in lines:
            out.line(text)
        return 0
    if args.explain:
        out.line(hintstate.notes_text(args.explain))
        return 0
    if args.timeout is None:  # imported here: --hint and --explain start without torch
        from kata.remote import CALL_TIMEOUT
        args.timeout = CALL_TIMEOUT
    if args.class_:
        from kata import classroom
        return classroom.main(args, out)
    if args.gradescope_bundle:
        from kata import gradescope
        out.line(f"wrote {gradescope.write_bundle(args.gradescope_bundle)}")
        return 0
    try:
        if args.reset:
            lines = reset.reset(args.reset, impl)
        elif args.restore:
            lines = reset.restore(args.restore, impl)
        elif args.compare:
            result = grade([args.compare], impl, out, args.timeout, rows=False)[args.compare]
            lines = reset.compare(args.compare, impl, result.passed)
        else:
            lines = None
    except ValueError as e:
        raise UsageError(str(e)) from None
    except reset.Refused as e:
        out.line(str(e))
        return 1
    if lines is not None:
        for text in lines:
            out.line(text)
        return 0
    if args.watch:
        from kata.watch import watch
        return watch(selected, impl, out, grade(selected, impl, out, args.timeout), args.timeout)
    results = grade(selected, impl, out, args.timeout, rows=not args.list)
    if args.list:
        for name in selected:
            r = results[name]
            out.line(f"{topics.NAMES.index(name) + 1:>3}. {name:<16} {r.max_score:>3} points  {r.status.value}"
                     f"  ({r.topic.section})")
    else:
        scorecard.summary(results, out, bool(args.topics), selected, hintstate.levels(),
                          None if args.all else scorecard.SHOWN)
    if args.json:
        scorecard.write_json(args.json, results, show_path(impl))
        out.line(f"wrote {args.json}")
    if args.report:
        from kata import remote, report
        from kata.testing import base_seed
        report.write(args.report, report.build(results, remote.learner_mode(), base_seed()))
        out.line(f"wrote {args.report}")
    return 0 if all(r.passed for r in results.values()) else 1


# ---------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, topics.NAMES, n=1)
    return (f"unknown topic {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
            + f"; topics are: {', '.join(topics.NAMES)}")


def _topic(name: str) -> str:
    if name not in topics.NAMES:
        raise UsageError(_unknown(name))
    return name


def parse(argv):
    p = _Parser(prog="grader.py", description=__doc__.split("\n\n")[0],
                epilog="Exit status: 0 every selected topic passes, 1 any fails, 2 usage error.")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="only these topics, with failing tests in full")
    p.add_argument("--impl", metavar="exercises|solutions|PATH", help="what to grade (default: $KATA_IMPL or exercises)")
    p.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument("--report", metavar="PATH", help="also write the whole verdict as JSON here (its schema: README)")
    p.add_argument("--all", action="store_true", help="with TOPIC: show every failing test, not the first few")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per call of your code (default: kata/remote.py's CALL_TIMEOUT)")
    p.add_argument("--level", type=int, default=None, metavar="N", help="with --hint: show level N")
    one = p.add_mutually_exclusive_group()
    one.add_argument("--hint", metavar="TOPIC", help="show the next hint level for TOPIC")
    one.add_argument("--explain", metavar="TOPIC", help="answers to viewer questions for TOPIC")
    one.add_argument("--reset", metavar="TOPIC", help="back up your TOPIC file and put the stub back")
    one.add_argument("--restore", metavar="TOPIC", help="bring back the latest backup of your TOPIC file")
    one.add_argument("--compare", metavar="TOPIC", help="once TOPIC passes: your code beside the reference")
    one.add_argument("--watch", action="store_true", help="re-grade each topic when its file is saved")
    one.add_argument("--list", action="store_true", help="topics in order with points and status")
    one.add_argument("--gradescope-bundle", metavar="ZIP", help="write a Gradescope autograder zip")
    one.add_argument("--class", dest="class_", metavar="SUBMISSIONS",
                     help="grade a class: a folder of student folders, a zip of one, or a Gradescope export zip")
    p.add_argument("--out", default="class-report", metavar="DIR", help="with --class: where the report goes")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="with --class: submissions graded at once "
                   "(default: the number of cores)")
    p.add_argument("--anonymize", action="store_true", help="with --class: replace the student ids")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
