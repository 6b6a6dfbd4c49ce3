"""`python grader.py --watch`: grade once, then re-grade each topic as its file is saved, from
this warm process (torch and the test modules are imported once; each grade starts a fresh
learner process, so the saved file is what runs)."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from kata import grading, hintstate, scorecard
from kata.loader import show_path

POLL = 0.1  # seconds between checks of the watched files' modification times


def _stamp(path: Path):
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def watch(selected, impl: Path, out: scorecard.Out, results: dict, timeout: float) -> int:
    """After the first grading (`results`, its rows printed): the summary, then re-grade each topic
    of `selected` whenever its file is saved."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops, even if started in the background
    scorecard.summary(results, out, False, selected, hintstate.levels())
    seen = {name: _stamp(impl / f"{name}.py") for name in selected}
    out.line(f"\nwatching {show_path(impl)} for saves (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(POLL)
            for name in selected:
                now = _stamp(impl / f"{name}.py")
                if now == seen[name]:
                    continue
                seen[name] = now
                out.progress(f"     running {name} ...")
                r = grading.grade([name], impl, timeout=timeout)[name]
                results[name] = r
                out.line(f"\n[{time.strftime('%H:%M:%S')}] {scorecard.row(out, r).strip()}")
                if r.passed:
                    following = scorecard.next_topic(results)
                    out.line(f"{name} passes. " + (f"next: {following}" if following else "every topic passes."))
                else:
                    for text in scorecard.details(r, hintstate.levels().get(name), most=3):
                        out.line(text)
                seen[name] = _stamp(impl / f"{name}.py")
    except KeyboardInterrupt:
        out.line("\nstopped watching.")
    return 0
