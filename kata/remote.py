"""The test side of the process boundary: the one place that knows there is another process.

Learner code runs in a learner process (kata/learner.py). The tests hold proxies:

    impl = Remote("solutions")              # an implementation folder, or a notebook bundle
    bn = impl.load("batchnorm")             # a RemoteModule: its functions and classes
    out = bn.batchnorm_forward(x, g, b)     # the call runs there; `out` is a tensor here
    layer = impl.load("modules").Linear(3, 4)   # a Handle: the object stays there
    layer.weight                            # a copy of its weight, as data
    layer.training = False                  # set there
    probe("assign", layer, "weight", w)     # copy values into its tensor in place (kata/probes.py)

Each call carries torch's grad mode, default dtype and global RNG state, and the state of every
torch.Generator passed; what the call left of them comes back and is set here, as if the call had
run in this process. Argument tensors (and lists) that learner code changed in place are changed
here the same way, so "inputs unchanged" tests see what happened. A result that is an argument,
or a view of one, is marked so (`shares_memory_with`), and each tensor read from the learner side
carries its id there (`same_object`).

Learner processes run in the sandbox (kata/sandbox.py), forked by its zygote, where one starts;
otherwise they are forked from this process (mode "process", `learner_mode()`). Either way, a
call has one deadline that no message extends: one that does not return in time kills the
learner process (after SIGUSR1, which makes it dump its stack), which is started again for the
next call; that function's later calls fail at once, and so do those of the functions of its
file that call it. A reply longer than wire.MAX_REPLY is refused before it is read. A call that ends the process
(os._exit, a crash) fails the same way. Replies are decoded by kata/wire.py, which builds plain
data only.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from kata import sandbox, topics, wire
from kata.failure import KataFailure, Kind, LearnerProcessFailure

CALL_TIMEOUT = 3.0  # seconds a learner call may take: the tests' calls take milliseconds, slow correct code 100x that
START_TIMEOUT = 30.0  # seconds a new learner process may take to say it is ready (forks take milliseconds)
ABORT_GRACE = 0.3  # seconds a learner process that ran past its deadline has to dump its stack (SIGUSR1)


class GraderFailure(LearnerProcessFailure):
    """The kata itself could not run learner code (the learner process could not start, the sandbox
    failed): never the learner's failure. kata.grading turns it into exit status 3."""

    def __init__(self, message: str):
        super().__init__(f"the grader failed: {message}", Kind.CRASH)


grader_failure: str | None = None  # set once a GraderFailure was raised in this process

class LearnerError(Exception):
    """Mixed into the exception raised here for one raised by learner code: it carries the
    learner's exception type name and the frames of learner code it passed through."""

    learner_type: str = ""
    frames: tuple = ()


_error_classes: dict[type, type] = {}


def learner_exception(info: dict) -> BaseException:
    """An exception of the builtin class the learner's exception derives from (ValueError for a
    ValueError, RuntimeError for torch's errors), so tests can catch it as they would in-process."""
    base = wire.BUILTIN_ERRORS.get(info.get("base")) or Exception
    if base not in _error_classes:
        _error_classes[base] = type(base.__name__, (base, LearnerError),  # str() is the learner's message as it was,
                                    {"__module__": "builtins", "__str__": BaseException.__str__})  # not KeyError's repr
    error = _error_classes[base](str(info.get("message", "")))
    error.learner_type = str(info.get("type", base.__name__))
    error.frames = tuple(tuple(f) for f in info.get("frames", []) if isinstance(f, list) and len(f) == 4)
    return error


# ---------------------------------------------------------------- the learner process
class LearnerProcess:
    """One learner process, started on first use and again after a timeout or a crash."""

    def __init__(self, timeout: float = CALL_TIMEOUT):
        self.timeout = timeout
        self.bundle = None  # a cloudpickle file of notebook objects (kata.plugin sets it), or None
        self.generation = 0
        self.pid = None
        self.popen = None
        self.channel: wire.Channel | None = None
        self.log = None
        self.stopped: dict[str, tuple] = {}  # call key -> (Kind, why) its later calls are not run
        self.names: dict[tuple, dict] = {}  # (generation, impl, topic) -> {name: kind}
        self.release: list[int] = []        # handle ids the tests no longer hold
        self.handles: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.rng = None  # the global RNG state the learner process has, as bytes (None: unknown)
        self.tape: list | None = None  # the current test's exchanges, while kata.plugin records them
        self.zygote: sandbox.Zygote | None = None  # the sandbox's zygote that forked it, or None (process mode)
        self.staged: set[str] = set()   # implementation folders copied into the sandbox for this process
        self.impls: set[str] = set()    # every implementation folder it was asked about
        self.last_log = ""              # the end of the log of the last learner process stopped

    # ------------------------------------------------------------ life
    def start(self) -> None:
        global _last_mode
        if grader_failure:
            raise GraderFailure(grader_failure)
        _guard_test_process()
        child_in, parent_out = os.pipe()    # test -> learner
        parent_in, child_out = os.pipe()    # learner -> test
        self.log = tempfile.TemporaryFile()
        sys.stdout.flush()
        sys.stderr.flush()
        self.zygote, self.staged, self.popen = _zygote(), set(), None
        try:
            if self.zygote is not None:
                self.pid = self._spawn_in_sandbox(child_in, child_out)
            elif can_fork():
                self.pid = self._fork(child_in, child_out)
            else:
                command = [sys.executable, "-m", "kata.learner", str(child_in), str(child_out)]
                if self.bundle:
                    command.append(self.bundle)
                self.popen = subprocess.Popen(command, pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL,
                                              stdout=self.log, stderr=subprocess.STDOUT, close_fds=True,
                                              process_group=0 if hasattr(os, "setpgid") else None)
                self.pid = self.popen.pid
        finally:
            os.close(child_in)
            os.close(child_out)
        _last_mode = "sandbox" if self.zygote is not None else "process"
        self.channel = wire.Channel(parent_in, parent_out, limit=wire.MAX_REPLY)
        self.generation += 1
        self.rng = None
        _running.add(self)
        self._await_ready()
        for impl in sorted(self.impls):
            self._stage(impl)

    def _fork(self, child_in: int, child_out: int) -> int:
        pid = os.fork()
        if pid == 0:  # the learner process: it never returns into the test process's code
            try:
                from kata import learner
                learner.run_forked(child_in, child_out, self.log.fileno(), self.bundle)
            finally:
                os._exit(70)
        return pid

    def _spawn_in_sandbox(self, child_in: int, child_out: int) -> int:
        for attempt in (1, 2):
            bundle = sandbox.stage_file(self.zygote.stage, self.bundle, "bundle.pkl") if self.bundle else None
            cells = Path(self.bundle).with_name("cells.json") if self.bundle else None
            if cells is not None and cells.is_file():  # the cells' lines, for the learner's tracebacks
                sandbox.stage_file(self.zygote.stage, str(cells), "cells.json")
            try:
                return self.zygote.spawn(child_in, child_out, self.log.fileno(), bundle)
            except sandbox.SandboxError as e:
                if attempt == 2 or not self.zygote.ready:  # it never worked: the kata's failure
                    _fail(str(e))
                self.zygote = _zygote(fresh=True)  # it worked, and has gone since (learner code can kill
                # it when the run is not root): a new one

    def _await_ready(self) -> None:
        """The learner process says "ready" once it is set up, before any learner code runs: one that
        cannot is the kata's failure (a missing user, a module it cannot import), not the learner's."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            reply, _ = self.channel.recv(lambda fd: _wait(fd, deadline))
            if reply.get("op") == "ready":
                return
            why = "it sent something else first"
        except _Deadline:
            why = f"it did not answer within {START_TIMEOUT:g} s"
        except (EOFError, OSError, wire.WireError) as e:
            why = f"it ended ({type(e).__name__})"
        status = self.stop()
        _fail(f"the learner process could not start: {why}, {_exit_words(status)}"
              + (f"\nits last output:\n{self.last_log}" if self.last_log else ""))

    def _stage(self, impl: str) -> None:
        """Copy an implementation folder into the sandbox, once per learner process."""
        self.impls.add(impl)
        if self.zygote is not None and impl not in self.staged and not impl.startswith("bundle:"):
            sandbox.stage_impl(self.zygote.stage, impl)
            self.staged.add(impl)

    def alive(self) -> bool:
        return self.channel is not None

    def stop(self, grace: float = 0.0) -> int | None:
        """Kill the process (if it runs) and everything it started, and return its exit status as
        a shell shows it. With `grace`, SIGUSR1 first: the learner process dumps its stack to its
        log (faulthandler), which says which learner function was running."""
        if self.channel is None:
            return None
        for fd in (self.channel.fd_in, self.channel.fd_out):
            try:
                os.close(fd)
            except OSError:
                pass
        self.channel = None
        if grace:
            self._dump_stack(grace)
        if self.zygote is not None:
            try:
                status = self.zygote.stop(self.pid)
            except sandbox.SandboxError:
                status = None  # the zygote has gone, and its namespace with it
        else:
            _kill_group(self.pid)
            status = self._reap()
            _stop_orphans()
        _running.discard(self)
        self.last_log = self.log_tail(64000)  # a stack dump of a deep stack is long, innermost frame first
        self.log_text = self.last_log[-4000:]
        self.log.close()
        return status

    def _dump_stack(self, grace: float) -> None:
        """SIGUSR1 makes the learner process write its stack to its log (faulthandler, in C: it works
        inside a loop that never returns to Python); wait until it has, at most `grace` seconds."""
        size = os.fstat(self.log.fileno()).st_size
        try:
            if self.zygote is not None:
                self.zygote.signal(self.pid, signal.SIGUSR1)
            else:
                os.kill(self.pid, signal.SIGUSR1)
        except (OSError, sandbox.SandboxError):
            return
        end = time.monotonic() + grace
        while time.monotonic() < end:
            time.sleep(0.01)
            now = os.fstat(self.log.fileno()).st_size
            if now > size:  # written in one go from the signal handler; a moment more for the rest
                time.sleep(0.02)
                return

    def _reap(self) -> int | None:
        try:
            if self.popen is not None:
                code = self.popen.wait(timeout=10)
                return 128 - code if code < 0 else code
            _, status = os.waitpid(self.pid, 0)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        except (ChildProcessError, subprocess.TimeoutExpired):
            return None

    def log_tail(self, limit: int = 1200) -> str:
        """The end of what the learner process printed (its stdout and stderr)."""
        if self.log is None or self.log.closed:
            return getattr(self, "log_text", "")[-limit:]
        self.log.seek(0, os.SEEK_END)  # the log may be long (up to the learner's file-size limit): read its end
        self.log.seek(max(0, self.log.tell() - limit))
        text = self.log.read(limit).decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if not line.startswith("Extension modules:")).strip()

    # ------------------------------------------------------------ requests
    def request(self, header: dict, encoder: wire.Encoder | None, key: str, what: str):
        """Send one request and wait for its reply, serving the learner's callbacks meanwhile.
        Returns (reply header, decoder); raises LearnerProcessFailure on a timeout or a crash."""
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        if key in self.stopped:
            kind, why = self.stopped[key]
            raise LearnerProcessFailure(f"not run: {why}", kind)
        if not self.alive():
            self.start()
        for impl in (header.get("impl"), (header.get("target") or {}).get("impl")):
            if isinstance(impl, str):
                self._stage(impl)
        encoder = encoder or wire.Encoder(self.other)
        if self.release:
            header["release"], self.release = self.release, []
        try:
            self.channel.send(*wire.message(header, encoder))
            deadline = time.monotonic() + self.timeout  # one deadline for the call: no message extends it
            while True:
                reply, blobs = self.channel.recv(lambda fd: _wait(fd, deadline))
                if reply.get("op") != "callback":
                    break
                self.serve_callback(reply, blobs, encoder)
        except _Deadline:
            self.stop(grace=ABORT_GRACE)
            self.stopped[key] = (Kind.TIMEOUT, f"{what} timed out in an earlier test (after {self.timeout:g} s)")
            for hung, why in hung_keys(self.last_log).items():  # a hung function costs one timeout, whoever calls it
                self.stopped.setdefault(hung, (Kind.TIMEOUT, f"{why} timed out in an earlier test (after "
                                                             f"{self.timeout:g} s)"))
            raise LearnerProcessFailure(
                f"{what} timed out after {self.timeout:g} s: the code is still running (an infinite loop, or a "
                "loop much longer than this exercise needs); the learner process was stopped and restarted",
                Kind.TIMEOUT) from None
        except (EOFError, BrokenPipeError, OSError):
            status = self.stop()
            tail = self.log_tail()
            how = _exit_words(status)
            self.stopped[key] = (Kind.CRASH, f"{what} ended the learner process in an earlier test ({how})")
            raise LearnerProcessFailure(
                f"{what} ended the learner process ({how}): os._exit(), a crash of the interpreter, or a signal. "
                "No test can catch that, so it counts as a failure" + (f"\nits last output:\n{tail}" if tail else ""),
                Kind.CRASH) from None
        except wire.WireError as e:
            self.stop()
            raise LearnerProcessFailure(f"{what}: the learner process sent a malformed reply ({e})",
                                        Kind.CRASH) from None
        decoder = self.decoder(blobs)
        decoder.on_tensor = _marker(encoder)
        return reply, decoder, encoder

    def serve_callback(self, header: dict, blobs, outer: wire.Encoder) -> None:
        """Run a callable of the test's (registered in the outer request) for learner code."""
        decoder = self.decoder(blobs)
        encoder = wire.Encoder(self.other)
        reply = {"op": "return"}
        try:
            fn = outer.callbacks[header["id"]]
            args = decoder.decode(header.get("args", []))
            kwargs = decoder.decode(header.get("kwargs", {"$": "dict", "v": []}))
            state = header.get("state", {})
            with torch.set_grad_enabled(bool(state.get("grad", True))), _default_dtype(state.get("dtype")):
                reply["ok"] = encoder.encode(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - the learner gets the test's exception as a message
            reply = {"op": "return", "error": {"type": type(e).__name__, "message": str(e)[:500]}}
            encoder = wire.Encoder(self.other)
        self.channel.send(*wire.message(reply, encoder))

    def decoder(self, blobs) -> wire.Decoder:
        return wire.Decoder(blobs, self.ref)

    def ref(self, ref: wire.Ref):
        """What a reference from the learner side stands for here."""
        if ref.kind != "handle":
            raise wire.WireError(f"a {ref.kind} reference from the learner process")
        handle = self.handles.get((self.generation, ref.id))
        if handle is None:
            handle = Handle(self, self.generation, ref.id, ref.info)
            self.handles[(self.generation, ref.id)] = handle
        return handle

    def other(self, value):
        """How a value that is not plain data goes to the learner side."""
        if isinstance(value, Handle):
            return value._ref()
        if isinstance(value, RemoteFunction):
            return wire.Ref("remote", 0, {"impl": value._module._impl, "topic": value._module._topic,
                                          "name": value._name})
        raise wire.WireError(f"a {type(value).__name__} cannot be sent to the learner process")

    # ------------------------------------------------------------ the operations
    def call(self, target: dict, args, kwargs, key: str, what: str):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        encoder = _CallEncoder(self)
        header = {"op": "call", "target": target, "args": encoder.encode(list(args)),
                  "kwargs": encoder.encode(dict(kwargs)), "state": _state(encoder, self)}
        return self._finish(*self._taped(header, encoder, key, what), what)

    def getattr(self, handle: "Handle", name: str):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        encoder = _CallEncoder(self)
        header = {"op": "getattr", "target": {"handle": handle._check()}, "name": name, "state": _state(encoder, self)}
        what = f"reading {handle._info.get('type', 'object')}.{name}"
        return self._finish(*self._taped(header, encoder, f"{handle._key()}.{name}", what), what)

    def setattr(self, handle: "Handle", name: str, value) -> None:
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        encoder = _CallEncoder(self)
        header = {"op": "setattr", "target": {"handle": handle._check()}, "name": name,
                  "args": encoder.encode([value]), "state": _state(encoder, self)}
        what = f"setting {handle._info.get('type', 'object')}.{name}"
        self._finish(*self._taped(header, encoder, f"{handle._key()}.{name}=", what), what)

    def _taped(self, header: dict, encoder: "_CallEncoder", key: str, what: str):
        """request(), and the exchange added to `tape` when a test is being recorded: what
        kata/diagnose.py replays against each catalogued mistake."""
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        if self.tape is None:
            return self.request(header, encoder, key, what)
        exchange = Exchange.sent(header, encoder)
        self.tape.append(exchange)
        encoder.callbacks = exchange.observed(encoder.callbacks)
        reply, decoder, encoder = self.request(header, encoder, key, what)
        exchange.reply, exchange.reply_blobs = reply, [bytes(b) for b in decoder.blobs]
        return reply, decoder, encoder

    def load(self, impl: str, topic: str) -> dict:
        """{name: 'function' | 'class'} of the topic's module, importing it if needed."""
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        cached = self.names.get((self.generation, impl, topic))
        if cached is not None and self.alive():
            return cached
        reply, _, _ = self.request({"op": "load", "impl": impl, "topic": topic}, None, f"{impl}:{topic}:load",
                                   f"importing {topic}")
        if "error" in reply:
            error = reply["error"]
            raise KataFailure(error.get("message", "")) if error.get("type") == "LearnerImportError" \
                else LearnerImportFailure(f"importing {topic}.py raised {error.get('type')}: {error.get('message')}",
                                          error)
        names = reply.get("ok") if isinstance(reply.get("ok"), dict) else {}
        self.names[(self.generation, impl, topic)] = names
        return names

    def _finish(self, reply: dict, decoder: wire.Decoder, encoder: wire.Encoder, what: str):
        """Apply what the call changed here, then return its value or raise its error."""
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        _apply_state(reply.get("state"), decoder, self)
        _apply_mutations(reply, decoder, encoder)
        error = reply.get("error")
        if error is not None:
            if error.get("escape"):
                raise LearnerProcessFailure(
                    f"the code under test {error['escape']} during {what}: leaving a test early is not passing it, "
                    "so this counts as a failure", Kind.ESCAPE)
            if error.get("mistake") == "shortcut":
                raise KataFailure(error.get("message", ""), mistake="shortcut")
            raise learner_exception(error)
        if reply.get("shortcut"):
            raise KataFailure(f"{what} called {reply['shortcut']}, and caught the error it raised: the topic asks you "
                              "to write this computation yourself", mistake="shortcut")
        return decoder.decode(reply.get("ok"))


@dataclass
class Exchange:
    """One call, attribute read or write as the learner process got it and answered it: enough to
    send the same request to another implementation (kata/diagnose.py)."""
    header: dict          # the request, as JSON (the global RNG state travels in `rng` instead)
    blobs: list           # its tensor bytes
    rng: bytes            # the global RNG state when it was sent
    callbacks: dict       # the test's callables it passed (a model for split_loss)
    reply: dict | None = None  # None: no reply came (a timeout, a crash)
    reply_blobs: list = None
    called_back: list = None   # [callback, grad mode, default dtype] for each call of a callback
    random_source: bool = False  # it reads an object an earlier random call made (kata/diagnose.py sets it)

    def observed(self, callbacks: dict) -> dict:
        """The callbacks, noting how learner code called each (split_loss's forward must run
        with autograd off: the test sees that only inside the callback)."""
        self.called_back = log = []

        def watch(k, fn):
            def called(*args, **kwargs):
                log.append([k, torch.is_grad_enabled(), str(torch.get_default_dtype())])
                return fn(*args, **kwargs)
            return called
        return {k: watch(k, fn) for k, fn in callbacks.items()}

    @classmethod
    def sent(cls, header: dict, encoder: "_CallEncoder") -> "Exchange":
        request = json.loads(json.dumps({k: v for k, v in header.items() if k not in ("release", "blobs")}))
        request.get("state", {}).pop("rng", None)
        return cls(request, list(encoder.blobs), torch.get_rng_state().numpy().tobytes(), dict(encoder.callbacks))


class LearnerImportFailure(KataFailure):
    def __init__(self, message: str, info: dict):
        super().__init__(message)
        self.frames = info.get("frames", [])


class _CallEncoder(wire.Encoder):
    """The test side's encoder: handles go as references, generators with their state, and any
    other callable (a model for split_loss) as a callback the learner side can call back."""

    def __init__(self, proc: LearnerProcess):
        super().__init__(self.other_value, generators=True)
        self.proc = proc
        self.callbacks: dict[int, object] = {}

    def other_value(self, value):
        if callable(value) and not isinstance(value, (Handle, RemoteFunction, type)):
            self.callbacks[len(self.callbacks)] = value
            return wire.Ref("callback", len(self.callbacks) - 1, {"name": getattr(value, "__name__", "forward")})
        return self.proc.other(value)


def _marker(encoder: wire.Encoder):
    """Mark each tensor that comes back with its id in the learner process and, when it is (a view
    of) an argument, with that argument."""
    def mark(t: torch.Tensor, fields: dict) -> None:
        if type(fields.get("oid")) is int:
            t._kata_oid = fields["oid"]
        alias = fields.get("alias")
        if type(alias) is int and 0 <= alias < len(encoder.tensors):
            t._kata_aliases = (encoder.tensors[alias],)
    return mark


def _state(encoder: wire.Encoder, proc: "LearnerProcess") -> dict:
    """torch's global state, to be set in the learner process for the call. The global RNG's
    state goes only when it differs from what the learner process last had."""
    state = {"grad": torch.is_grad_enabled(), "dtype": str(torch.get_default_dtype()).removeprefix("torch.")}
    rng = torch.get_rng_state().numpy().tobytes()  # a contiguous uint8 tensor: its bytes directly
    if rng != proc.rng:
        encoder.blobs.append(rng)
        state["rng"] = len(encoder.blobs) - 1
        proc.rng = rng
    return state


def _apply_state(state, decoder: wire.Decoder, proc: "LearnerProcess") -> None:
    """Set here what the call left of torch's global state there."""
    if not isinstance(state, dict):
        return
    torch.set_grad_enabled(state.get("grad") is not False)
    dtype = wire.DTYPES.get(state.get("dtype"))
    if dtype is not None and dtype.is_floating_point and dtype != torch.bfloat16:
        torch.set_default_dtype(dtype)
    rng = state.get("rng")
    if type(rng) is int:
        blob = decoder.blob(rng)
        if len(blob) == torch.get_rng_state().numel():
            torch.set_rng_state(wire.tensor_from(blob, "uint8", [len(blob)]))
            proc.rng = bytes(blob)


def _apply_mutations(reply: dict, decoder: wire.Decoder, encoder: wire.Encoder) -> None:
    """Change the arguments here as learner code changed them there."""
    for entry in reply.get("mut", []) if isinstance(reply.get("mut"), list) else []:
        if not (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is int
                and 0 <= entry[0] < len(encoder.tensors)):
            raise wire.WireError("bad change report")
        t = encoder.tensors[entry[0]]
        if entry[1] is not None:
            new = decoder.decode(entry[1])
            with torch.no_grad():
                if new.shape == t.shape and new.dtype == t.dtype:
                    t.copy_(new)
                else:
                    t.data = new
        if isinstance(entry[2], dict):
            grad = decoder.decode(entry[2].get("v"))
            if grad is None or (isinstance(grad, torch.Tensor) and grad.shape == t.shape):
                t.grad = grad
    for k, value in reply.get("lists", []) if isinstance(reply.get("lists"), list) else []:
        if type(k) is int and 0 <= k < len(encoder.lists):
            encoder.lists[k][:] = decoder.decode(value)
    for k, blob in reply.get("gens", []) if isinstance(reply.get("gens"), list) else []:
        if type(k) is int and 0 <= k < len(encoder.generators):
            g = encoder.generators[k]
            state = decoder.blob(blob)
            if len(state) == g.get_state().numel():
                g.set_state(wire.tensor_from(state, "uint8", [len(state)]))


# ---------------------------------------------------------------- proxies
class Remote:
    """An implementation under test: a folder of topic files (exercises, solutions, a path), or
    the notebook objects of a bundle. `load(topic)` gives that topic's RemoteModule."""

    def __init__(self, impl):
        from kata.loader import default_impl, resolve
        self.sources: dict[str, str] = {}  # a bundle's source texts, by topic
        if isinstance(impl, str) and impl.startswith("bundle:"):
            self.path, self.key = None, impl
            self.sources = _read_sources(Path(impl.removeprefix("bundle:")) / "sources.json")
        else:
            self.path = resolve(impl)
            self.key = str(self.path)
        self.label = str(impl or default_impl())
        self.proc = shared_process()

    def load(self, topic: str) -> "RemoteModule":
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        module = RemoteModule(self, topic)
        try:
            self.proc.load(self.key, topic)  # an import error fails here, once, with the learner's message
        except LearnerProcessFailure as e:  # a module fixture must raise an Exception: pytest keeps it
            raise KataFailure(str(e), kind=e.kind) from None  # for every test of the module
        return module

    def file(self, topic: str):
        return None if self.path is None else self.path / f"{topic}.py"

    def source(self, topic: str) -> tuple[str | None, str]:
        """The learner's source text of a topic and where it is from, for checks that read it
        (with ast, never running it); (None, ...) when there is none to read."""
        if self.path is None:
            return self.sources.get(topic), f"the notebook's {topic} code"
        file = self.file(topic)
        try:  # decoded as Python decodes it (a coding line, a BOM): what runs is what is read
            from kata.review import read_source
            return read_source(file), file.name
        except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
            return None, file.name


class RemoteModule:
    def __init__(self, remote: Remote, topic: str):
        self._remote, self._impl, self._topic = remote, remote.key, topic

    def __getattr__(self, name: str):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        if name.startswith("__"):
            raise AttributeError(name)
        names = self._remote.proc.load(self._impl, self._topic)
        if name not in names:
            where = (f"the notebook defines no {name}: define {name} in a cell, or pass it to check()"
                     if self._remote.path is None else f"{self._topic}.py has no {name}: the topic's stub defines it, "
                     "with its docstring; define it there")
            raise KataFailure(where)
        return RemoteFunction(self, name, names[name])

    def __repr__(self):
        return f"<learner module {self._topic} of {self._remote.label}>"


class RemoteFunction:
    """A learner function or class; calling it runs it in the learner process."""

    def __init__(self, module: RemoteModule, name: str, kind: str):
        self._module, self._name, self._kind = module, name, kind

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        m = self._module
        target = {"impl": m._impl, "topic": m._topic, "name": self._name}
        return m._remote.proc.call(target, args, kwargs, self._call_key, self._name)

    @property
    def _call_key(self) -> str:
        """Which calls share a timeout: every call of this function."""
        return f"{self._module._impl}:{self._module._topic}.{self._name}"

    @property
    def __name__(self):
        return self._name

    def __repr__(self):
        return f"<learner {self._kind} {self._module._topic}.{self._name}>"


class Handle:
    """A learner object that stays in the learner process. Reading an attribute copies it here
    as data (or gives another Handle); setting one sets it there; calling it calls it there."""

    __slots__ = ("_proc", "_generation", "_id", "_info", "__weakref__")

    def __init__(self, proc: LearnerProcess, generation: int, id: int, info: dict):
        object.__setattr__(self, "_proc", proc)
        object.__setattr__(self, "_generation", generation)
        object.__setattr__(self, "_id", id)
        object.__setattr__(self, "_info", info)
        weakref.finalize(self, _release, weakref.ref(proc), generation, id)

    def _check(self) -> int:
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        if self._generation != self._proc.generation or not self._proc.alive() and self._generation:
            raise LearnerProcessFailure(
                f"not run: this {self.kata_type} was made in a learner process that was stopped since (after a "
                "timeout or a crash), so it no longer exists", Kind.CRASH)
        return self._id

    def _ref(self) -> wire.Ref:
        return wire.Ref("handle", self._check())

    def _key(self) -> str:
        return f"{self._info.get('impl')}:{self._info.get('qualname', self.kata_type)}"

    @property
    def kata_type(self) -> str:
        """The learner object's type name (`Linear`, `float32`, ...)."""
        return str(self._info.get("type", "object"))

    def __getattr__(self, name: str):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name in self._info.get("methods", ()):
            return BoundMethod(self, name)
        return self._proc.getattr(self, name)

    def __setattr__(self, name: str, value) -> None:
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        self._proc.setattr(self, name, value)

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        return self._proc.call({"handle": self._check()}, args, kwargs, self._call_key, f"{self.kata_type}(...)")

    @property
    def _call_key(self) -> str:
        return f"{self._key()}.__call__"

    def __repr__(self) -> str:
        return str(self._info.get("repr") or f"<{self.kata_type} object>")


class BoundMethod:
    def __init__(self, handle: Handle, name: str):
        self.handle, self.name = handle, name

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
        h = self.handle
        return h._proc.call({"handle": h._check(), "method": self.name}, args, kwargs, f"{h._key()}.{self.name}",
                            f"{h.kata_type}.{self.name}")


def _release(proc_ref, generation: int, id: int) -> None:
    proc = proc_ref()
    if proc is not None and proc.generation == generation:
        proc.release.append(id)


# ---------------------------------------------------------------- helpers for tests
def probe(name: str, *args, topic: str | None = None, what: str | None = None, key: str | None = None):
    """Run kata/probes.py's `name` in the learner process with these arguments; `what` is how a
    failure names the call, and `key` which call's timeout it shares (the learner function it runs:
    a function that hung once fails at once, through a probe too)."""
    __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
    proc = next((a._proc for a in _flatten(args) if isinstance(a, Handle)), None) or shared_process()
    return proc.call({"probe": name, "topic": topic}, args, {}, key or f"probe:{name}:{topic}", what or name)


def _flatten(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


@dataclass
class VJP:
    out: object          # what the call returned
    graph: bool          # the output carries an autograd graph
    grads: tuple | None  # d sum(out * upstream) / d each argument (None where not differentiated)
    attrs: list | None   # ... / d each (object, attribute) asked for


def vjp(target, args, upstream, kwargs=None, wrt=None, grads_of=()) -> VJP:
    """Backpropagate sum(target(*args) * upstream) in the learner process: the learner's output
    and the gradients, for the test to compare with its own on this side."""
    __tracebackhide__ = True  # pytest shows the test's line, not the boundary's
    topic = getattr(getattr(target, "_module", None), "_topic", None)
    if isinstance(target, Handle) or isinstance(target, list):
        first = target if isinstance(target, Handle) else target[0]
        topic = first._info.get("topic")
    first = target[0] if isinstance(target, list) else target
    what = f"{first.kata_type}(...)" if isinstance(first, Handle) else getattr(first, "_name", "the call")
    result = probe("vjp", target, tuple(args), dict(kwargs or {}), upstream, wrt, [list(p) for p in grads_of],
                   what=what, key=getattr(first, "_call_key", None),
                   topic=topic)
    grads = result.get("grads")
    return VJP(result.get("out"), result.get("graph") is True, None if grads is None else tuple(grads),
               result.get("attrs"))


def same_object(a, b) -> bool:
    """Are `a` and `b` one object? For tensors read from the learner side: the same tensor there."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        oa, ob = getattr(a, "_kata_oid", None), getattr(b, "_kata_oid", None)
        if oa is not None or ob is not None:
            return oa == ob
    return a is b


def shares_memory_with(out, value) -> bool:
    """Is `out` the tensor `value` or a view of it (an argument the learner returned)?"""
    return any(v is value for v in getattr(out, "_kata_aliases", ()))


# ---------------------------------------------------------------- the shared process
_shared: LearnerProcess | None = None
_running: set = set()


def shared_process(timeout: float | None = None) -> LearnerProcess:
    """The learner process of this test process (one serves every implementation)."""
    global _shared
    if _shared is None:
        _shared = LearnerProcess(CALL_TIMEOUT if timeout is None else timeout)
        _zygote()  # the sandbox starts now, importing torch while pytest collects the tests
    elif timeout is not None:
        _shared.timeout = timeout
    return _shared


_last_mode: str | None = None  # how the last learner process started ran learner code


def learner_mode() -> str:
    """How learner code ran, as the report says it: "sandbox" or "process" (grader.py --report's "mode"): the mode of
    the last learner process started, else the mode the next one would have."""
    return _last_mode or ("sandbox" if sandbox.available() else "process")


_the_zygote: sandbox.Zygote | None = None


def _zygote(fresh: bool = False) -> sandbox.Zygote | None:
    """The sandbox's zygote of this process (started on first use, again if it has died), or None
    where no sandbox can start (then learner processes are forked from this one)."""
    global _the_zygote
    if not sandbox.available():
        return None
    if _the_zygote is not None and (fresh or _the_zygote.popen.poll() is not None):
        _the_zygote.close()
        _the_zygote = None
    if _the_zygote is None:
        _the_zygote = sandbox.take_early() or sandbox.Zygote()
    return _the_zygote


def _fail(message: str):
    """Raise the kata's own failure, and remember it: the run ends with exit status 3."""
    global grader_failure
    grader_failure = grader_failure or message
    raise GraderFailure(message)


def hung_keys(log: str) -> dict[str, str]:
    """{call key: name of the hung function} for the learner functions that were running when a
    deadline hit (the stack the learner process dumped on SIGUSR1), and for every function of
    the same file that calls one of them by name: each would hang again, and cost another timeout."""
    import ast
    stack = re.findall(r'File "([^"\n]+)", line \d+ in (\w+)', log.split("most recent call first", 1)[-1])
    out: dict[str, str] = {}
    for file, name in stack:
        file = _unstaged(file)
        path = Path(file)
        if path.stem not in topics.NAMES or path.parent == Path(sandbox.KATA):
            continue
        hung = {name}
        try:
            tree = ast.parse(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            tree = None
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] if tree else []
        while True:  # callers, and their callers
            callers = {f.name for f in functions if f.name not in hung and any(
                isinstance(n, ast.Name) and n.id in hung for n in ast.walk(f))}
            if not callers:
                break
            hung |= callers
        for fn in hung:
            out.setdefault(f"{path.parent}:{path.stem}.{fn}", name)
        break  # the innermost learner frame is the one that hung
    return out


def _unstaged(file: str) -> str:
    """A staged copy's path (in the sandbox) as the implementation folder's own."""
    proc = _shared
    if proc is not None and proc.zygote is not None:
        for impl in proc.impls:
            staged = str(proc.zygote.stage / sandbox.stage_key(impl))
            if file.startswith(staged + os.sep):
                return impl + file[len(staged):]
    return file


def reset_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
    _shared = None


@atexit.register
def _stop_all() -> None:
    global _the_zygote
    for proc in list(_running):
        proc.stop()
    if _the_zygote is not None:
        _the_zygote.close()
        _the_zygote = None
    _stop_user(set())


def can_fork() -> bool:
    """Fork is fast and safe from a process with one thread (the grader, pytest); a notebook
    kernel has several, and Windows has no fork: there the learner process is started afresh."""
    return hasattr(os, "fork") and threading.active_count() == 1 and os.environ.get("KATA_SPAWN") != "1"


class _Deadline(Exception):
    pass


def _wait(fd: int, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
        raise _Deadline


_guarded = False


def _guard_test_process() -> None:
    """Once, before the first learner process starts (Linux): no other process of this user may
    read this one's memory or open its descriptors (/proc/<pid>/fd: the terminal, a results file),
    and a process that learner code starts and orphans becomes this one's child, so that stopping
    the learner process stops it too (a daemon could otherwise rewrite a results file later)."""
    global _guarded
    if _guarded or not sys.platform.startswith("linux"):
        return
    _guarded = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(4, 0)   # PR_SET_DUMPABLE: off
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: on
    except OSError:
        pass


def _stop_orphans() -> None:
    """Kill the processes learner code started that outlived the learner process: this process's
    children (reparented here) in a process group of their own (its own subprocesses share its
    group), and, as root, every process of the learner's user but the live learner processes.
    Repeated until a pass finds none: a process may start another while it is being killed."""
    if not os.path.isdir("/proc"):
        return
    me, group = os.getpid(), os.getpgrp()
    for _ in range(200):
        found = False
        for pid, ppid, pgrp in _processes(zombies=True):
            if ppid == me and pgrp != group and not _is_learner(pid):
                found = True
                _kill(pid, reap=True)  # a zombie is only reaped: left, it would count against RLIMIT_NPROC
        if not found:
            break
    _stop_user({proc.pid for proc in _running if proc.alive() and proc.zygote is None})


def _stop_user(keep: set) -> None:
    """As root in process mode, learner code runs as KATA_LEARNER_USER: kill every process of that
    user except the process groups in `keep`, until none is left."""
    user = os.environ.get("KATA_LEARNER_USER")
    if not user or os.geteuid() != 0 or not os.path.isdir("/proc"):
        return
    try:
        import pwd
        uid = pwd.getpwnam(user).pw_uid
    except (KeyError, ImportError):
        return
    for _ in range(200):
        found = False
        for pid, _, pgrp in _processes():
            try:
                owner = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            if owner == uid and pgrp not in keep:
                found = True
                _kill(pid)
        if not found:
            return
        time.sleep(0.005)


def _processes(zombies: bool = False):
    """(pid, ppid, process group) of every process this one can see, zombies only if asked."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "(command)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        if zombies or fields[0] not in ("Z", "X"):
            yield int(entry), int(fields[1]), int(fields[2])


def _kill(pid: int, reap: bool = False) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    try:
        os.waitpid(pid, 0 if reap else os.WNOHANG)
    except ChildProcessError:
        pass


def _kill_group(pid: int) -> None:
    """SIGKILL to the learner's process group: processes learner code started go with it."""
    try:
        os.killpg(pid, signal.SIGKILL) if hasattr(os, "killpg") else os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_learner(pid: int) -> bool:
    return any(proc.pid == pid and proc.alive() for proc in _running)


def _exit_words(status) -> str:
    if status is None:
        return "it stopped answering"
    if status > 128:
        try:
            name = signal.Signals(status - 128).name
        except ValueError:
            name = f"signal {status - 128}"
        return f"killed by {name}" + (", a crash" if name in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE") else "")
    return f"exit status {status}"


def _read_sources(path: Path) -> dict:
    """A bundle's source texts: JSON, strings only (the test process never unpickles a bundle)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


class _default_dtype:
    def __init__(self, name):
        self.dtype = wire.DTYPES.get(name)

    def __enter__(self):
        self.before = torch.get_default_dtype()
        if self.dtype is not None and self.dtype.is_floating_point and self.dtype != torch.bfloat16:
            torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.before)

