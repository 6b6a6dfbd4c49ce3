"""The learner process: the only process that imports and runs learner code.

It serves requests from the test process (kata/remote.py) over two pipes, one message at a time:

    load      import a topic's module; say which public names are functions and classes
    call      call a module function, a class, a learner object or one of its methods, or a probe
              (kata/probes.py), with the caller's grad mode, default dtype and global RNG state
    getattr / setattr    an attribute of a learner object
    release   forget learner objects the test process no longer holds

Whatever learner code returns goes back as plain data (kata/wire.py); anything else stays here
and goes back as a handle. Whatever it raises, including SystemExit, KeyboardInterrupt and
pytest's skip and exit, goes back as an error that says what happened. While a call runs, torch's
ready-made versions of what the topic teaches raise instead of computing (kata/topics.py says
which, for each topic), and a call of one of them is reported even if learner code catches it.

A callable of the test's (a model for split_loss) arrives as a proxy: calling it sends the call
back to the test process and waits, serving any request that comes meanwhile.

    python -m kata.learner FD_IN FD_OUT [BUNDLE]     (started by kata/remote.py)
"""
from __future__ import annotations

import faulthandler
import gc
import importlib
import itertools
import os
import resource
import signal
import sys
import traceback
import types
import weakref
from contextlib import contextmanager
from pathlib import Path

import torch

from kata import probes, topics, wire  # probes: imported before the process loses access to the kata
from kata.loader import Implementation, LearnerImportError
from kata.wire import safe_repr
from kata.sandbox import PROCESSES, SANDBOX_UID, stage_key


class Server:
    def __init__(self, channel: wire.Channel, bundle: dict | None = None):
        self.channel = channel
        self.bundle = bundle or {}      # notebook objects: {topic: {name: object}}
        self.impls: dict[str, Implementation] = {}
        self.modules: dict[tuple, types.ModuleType] = {}
        self.objects: dict[int, object] = {}   # handle id -> learner object
        self.handle_of: dict[int, int] = {}    # id(object) -> handle id, so one object has one handle
        self.next_handle = 1
        self.origin: dict[str, tuple] = {}     # module name -> (impl, topic) of the learner modules loaded
        self.topic_of: dict[int, str] = {}     # handle id -> the topic of the call that made the object
        self.topic: str | None = None          # the topic of the call running now
        self.kept = None  # the last reply's values, alive until the next reply (their ids stay unique)
        for rule in topics.SHORTCUTS.values():  # before any learner module is imported: no alias escapes
            _install(rule)
        if not any(isinstance(f, _NoReference) for f in sys.meta_path):
            sys.meta_path.insert(0, _NoReference())

    # ------------------------------------------------------------ the loop
    def serve(self) -> None:
        while True:
            try:
                header, blobs = self.channel.recv()
            except EOFError:
                return
            self.handle(header, blobs)

    def handle(self, header: dict, blobs) -> None:
        op = header.get("op")
        for hid in header.get("release", []):
            obj = self.objects.pop(hid, None)
            self.handle_of.pop(id(obj), None)
            self.topic_of.pop(hid, None)
        if op == "load":
            self.reply(self.load(header))
        elif op in ("call", "getattr", "setattr"):
            self.reply(*self.run(op, header, blobs))
        else:
            self.reply({"error": {"type": "ValueError", "message": f"unknown request {op!r}"}})

    def reply(self, header: dict, encoder: wire.Encoder | None = None) -> None:
        encoder = encoder or wire.Encoder(self.as_handle)
        self.channel.send(*wire.message(header, encoder))

    # ------------------------------------------------------------ modules
    def module(self, impl: str, topic: str):
        key = (impl, topic)
        if key not in self.modules:
            if impl.startswith("bundle:"):
                self.modules[key] = self.bundle_module(topic)
            else:
                if impl not in self.impls:
                    self.impls[impl] = Implementation(staged(impl))
                self.modules[key] = self.impls[impl].load(topic)
            self.origin[self.modules[key].__name__] = key
        return self.modules[key]

    def bundle_module(self, topic: str):
        module = types.ModuleType(f"notebook_{topic}")
        for name, obj in self.bundle.get(topic, {}).items():
            setattr(module, name, obj)
        return module

    def load(self, header: dict) -> dict:
        try:
            module = self.module(header["impl"], header["topic"])
        except LearnerImportError as e:
            return {"error": {"type": "LearnerImportError", "message": unstaged(str(e))}}
        except BaseException as e:  # noqa: BLE001 - anything else while importing learner code
            return {"error": describe(e)}
        removed = guards_removed()
        rule = topics.shortcut_rule(header["topic"])
        if removed and rule is not None and set(removed) & set(rule.runtime):
            return {"error": {"type": "ShortcutError", "base": "RuntimeError", "mistake": "shortcut",
                              "message": f"importing {header['topic']} took off the kata's guard on {removed[0]}: "
                                         f"{rule.message(header['topic'])}"}}
        names = {}
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            if isinstance(value, type):
                names[name] = "class"
            elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) or callable(value):
                names[name] = "function"
        return {"ok": names}

    # ------------------------------------------------------------ calls
    def resolve(self, ref: wire.Ref):
        if ref.kind == "handle":
            if ref.id not in self.objects:
                raise wire.WireError(f"no learner object {ref.id}")
            return self.objects[ref.id]
        if ref.kind == "callback":
            return Callback(self, ref.id, ref.info.get("name", "callback"))
        if ref.kind == "remote":
            return getattr(self.module(ref.info["impl"], ref.info["topic"]), ref.info["name"])
        raise wire.WireError(f"a {ref.kind} reference cannot be sent to the learner process")

    def target(self, header: dict):
        """The callable (or object, for getattr/setattr) a request names, and its topic."""
        spec = header.get("target") or {}
        if "probe" in spec:
            return getattr(probes, spec["probe"]), spec.get("topic")
        if "handle" in spec:
            obj = self.objects[spec["handle"]]
            origin = self.origin.get(getattr(type(obj), "__module__", None))
            topic = origin[1] if origin else self.topic_of.get(spec["handle"])
            return (getattr(obj, spec["method"]) if spec.get("method") else obj), topic
        module = self.module(spec["impl"], spec["topic"])
        return getattr(module, spec["name"]), spec["topic"]

    def run(self, op: str, header: dict, blobs, _mutations=None, _blocked=None):
        # the kata's own observers come bound as defaults (set below, once both are defined), not
        # looked up as module globals during the call: rebinding kata.learner._mutations from
        # learner code does not turn them off
        generators: dict[int, torch.Generator] = {}
        decoder = wire.Decoder(blobs, self.resolve, generator=lambda k, state: _generator(generators, k, state))
        try:
            args = decoder.decode(header.get("args", []))
            kwargs = decoder.decode(header.get("kwargs", {"$": "dict", "v": []}))
            target, topic = self.target(header)
        except Exception as e:  # noqa: BLE001 - a malformed request or a missing name
            return {"error": describe(e)}, None
        self.topic = topic
        before = [(t, _view(src, t), t.grad if t.is_leaf else None) for t, src in zip(decoder.tensors, decoder.sources)]
        lists = [(lst, list(lst)) for lst in decoder.lists]
        record: dict = {"shortcut": None}
        result: dict = {}
        value = None
        try:
            rng_before = enter_state(header.get("state", {}), blobs)
            hidden = self.module_generators()
            with _blocked(topic, record):
                if op == "call":
                    value = target(*args, **kwargs)
                elif op == "getattr":
                    value = getattr(target, header["name"])
                else:
                    setattr(target, header["name"], args[0])
        except BaseException as e:  # noqa: BLE001 - learner code is untrusted: exits and skips included
            result["error"] = describe(e)
        after = leave_state(rng_before if "rng_before" in locals() else None)
        encoder = wire.Encoder(self.as_handle, tensor_meta=_meta(decoder.tensors))
        if "error" not in result:
            try:
                result["ok"] = encoder.encode(value)
            except wire.WireError as e:
                result = {"error": {"type": "TypeError", "base": "TypeError",
                                    "message": f"the value returned cannot be sent back: {e}"}}
        rng = after.pop("rng", None)
        if rng is not None:
            encoder.blobs.append(rng)
            after["rng"] = len(encoder.blobs) - 1
        if "hidden" in locals() and hidden != self.module_generators():
            after["hidden_rng"] = True  # a generator a learner module keeps (the lecture's global g) drew
        result["state"] = after
        if record["shortcut"]:
            result["shortcut"] = record["shortcut"]
        result["mut"] = _mutations(before, encoder)
        result["lists"] = [[k, encoder.encode(lst)] for k, (lst, items) in enumerate(lists)
                           if len(lst) != len(items) or any(a is not b for a, b in zip(lst, items))]
        result["gens"] = []
        for k, g in generators.items():
            encoder.blobs.append(wire.tensor_bytes(g.get_state()))
            result["gens"].append([k, len(encoder.blobs) - 1])
        self.kept = (value, args, kwargs)  # alive until the next reply: the ids sent stay unique
        return result, encoder

    def module_generators(self) -> list:
        """The states of the torch.Generators the loaded modules keep as globals (the lecture's
        `g`): a call that draws from one is random although no generator crossed the boundary."""
        return [g.get_state().numpy().tobytes() for module in self.modules.values() for g in vars(module).values()
                if isinstance(g, torch.Generator)]

    def as_handle(self, value) -> wire.Ref:
        """Anything that is not plain data stays here; the test process gets a handle to it."""
        if isinstance(value, float):
            return float(value)  # numpy.float64 and other float subclasses cross as their value
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, Callback):
            return wire.Ref("callback", value.id)
        hid = self.handle_of.get(id(value))
        if hid is None or self.objects.get(hid) is not value:
            hid = self.next_handle
            self.next_handle += 1
            self.objects[hid] = value
            self.handle_of[id(value)] = hid
            self.topic_of[hid] = self.topic
        kind = type(value)
        impl, topic = self.origin.get(getattr(kind, "__module__", None)) or (None, self.topic_of[hid])
        return wire.Ref("handle", hid, {
            "type": kind.__name__, "qualname": f"{getattr(kind, '__module__', '')}.{kind.__qualname__}",
            "impl": impl, "topic": topic, "repr": safe_repr(value, 120), "methods": _methods(kind),
            "callable": callable(value)})


class _NoReference:
    """The reference (solutions/) cannot be imported by learner code, whatever the spelling."""

    def find_spec(self, name, path=None, target=None):
        if name == "solutions" or name.startswith("solutions."):
            raise ImportError(f"import {name}: the reference is not yours to import; write the code yourself")
        return None


class Callback:
    """A callable of the test process (the test's model for split_loss), called from learner code."""

    def __init__(self, server: Server, id: int, name: str):
        self.server, self.id, self.name = server, id, name

    def __call__(self, *args, _grad_enabled=torch._C.is_grad_enabled, **kwargs):
        # the grad mode is read with torch's own C function, bound when this process started: a
        # learner's torch.is_grad_enabled = lambda: False does not change what the test is told
        server = self.server
        encoder = wire.Encoder(server.as_handle, tensor_meta=lambda t: {"oid": id(t)})
        header = {"op": "callback", "id": self.id, "args": encoder.encode(list(args)),
                  "kwargs": encoder.encode(dict(kwargs)),
                  "state": {"grad": _grad_enabled(), "dtype": _dtype_name(torch.get_default_dtype())}}
        server.channel.send(*wire.message(header, encoder))
        while True:  # the test process may call into us before it answers
            reply, blobs = server.channel.recv()
            if reply.get("op") == "return":
                break
            server.handle(reply, blobs)
        if "error" in reply:
            raise CallbackError(reply["error"])
        return wire.Decoder(blobs, server.resolve).decode(reply.get("ok"))

    def __repr__(self):
        return f"<the test's {self.name}>"


class CallbackError(Exception):
    """The test's callable raised; its message says what."""


def _generator(cache: dict, index: int, state: torch.Tensor) -> torch.Generator:
    if index not in cache:
        g = torch.Generator()
        g.set_state(state)
        cache[index] = g
    return cache[index]


def _meta(arg_tensors):
    """For each tensor sent back: its id here (so the test can tell whether two reads are one
    tensor) and, if it shares memory with an argument, which one (a view or the argument itself)."""
    storages = {}
    for k, t in enumerate(arg_tensors):
        if t.numel():
            storages.setdefault(t.untyped_storage().data_ptr(), k)

    def meta(t):
        out = {"oid": _serial(t)}
        if t.numel() and t.device.type == "cpu" and t.layout == torch.strided:
            alias = storages.get(t.untyped_storage().data_ptr())
            if alias is not None:
                out["alias"] = alias
        return out
    return meta


_serials: dict = {}  # id(tensor) -> (its number, a weak reference that forgets it when it dies)
_count = itertools.count(1)


def _serial(t: torch.Tensor) -> int:
    """A tensor's number in this process, never reused (id() is, once a temporary is freed): two
    reads give one number only when they are one tensor, in this test and in a replay of it."""
    key = id(t)
    known = _serials.get(key)
    if known is None or known[1]() is not t:
        known = (next(_count), weakref.ref(t, lambda _, key=key: _serials.pop(key, None)))
        _serials[key] = known
    return known[0]


def _mutations(before, encoder: wire.Encoder) -> list:
    """[k, data, grad] for each argument tensor (k in the order sent) that learner code changed in
    place: data is the tensor's new value or None, grad {"v": new .grad or None} or None."""
    out = []
    for k, (t, original, grad) in enumerate(before):
        grad_now = t.grad if t.is_leaf else None
        new_data = t.shape != original.shape or t.dtype != original.dtype or not _equal(t, original)
        new_grad = grad_now is not grad
        if new_data or new_grad:
            out.append([k, encoder.encode(t.detach()) if new_data else None,
                        {"v": None if grad_now is None else encoder.encode(grad_now.detach())} if new_grad else None])
    return out


def _view(blob, t: torch.Tensor) -> torch.Tensor:
    """The tensor as it arrived: a view of the message's bytes (the learner got a copy of them)."""
    if t.numel() == 0:
        return torch.empty(t.shape, dtype=t.dtype)
    return torch.frombuffer(blob, dtype=torch.uint8).view(t.dtype).reshape(t.shape)


def _equal(t: torch.Tensor, original: torch.Tensor) -> bool:
    """Unchanged, bit for bit where it matters: NaN where there was NaN counts as unchanged."""
    t = t.detach()
    if torch.equal(t, original):
        return True
    if t.is_floating_point() or t.is_complex():
        return bool(torch.equal(t.isnan(), original.isnan())) and torch.equal(t.nan_to_num(), original.nan_to_num())
    return False


def _methods(kind) -> list[str]:
    """Names that are functions on the class: a handle calls them without asking first."""
    names = set()
    for klass in getattr(kind, "__mro__", ()):
        if klass is object or klass.__module__.startswith("torch"):
            continue
        names.update(n for n, v in vars(klass).items() if isinstance(v, types.FunctionType))
    if issubclass(kind, torch.nn.Module):
        names.update(("parameters", "train", "eval"))
    return sorted(names)


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------- global state
def enter_state(state: dict, blobs):
    """Set the caller's grad mode, default dtype and global RNG state; return the RNG state set."""
    torch.set_grad_enabled(bool(state.get("grad", True)))
    dtype = wire.DTYPES.get(state.get("dtype"), torch.float32)
    if dtype.is_floating_point and dtype != torch.bfloat16:
        torch.set_default_dtype(dtype)
    rng = state.get("rng")
    if type(rng) is int and 0 <= rng < len(blobs):  # sent only when it changed since the last call
        torch.set_rng_state(wire.tensor_from(blobs[rng], "uint8", [len(blobs[rng])]))
    return torch.get_rng_state()


def leave_state(rng_before) -> dict:
    """What the call left behind: grad mode, default dtype, and the RNG state if it moved."""
    after = {"grad": torch.is_grad_enabled(), "dtype": _dtype_name(torch.get_default_dtype())}
    if rng_before is not None:
        now = torch.get_rng_state()
        if not torch.equal(now, rng_before):
            after["rng"] = wire.tensor_bytes(now)
    torch.set_grad_enabled(True)
    return after


# ---------------------------------------------------------------- shortcuts
_guards: dict = {}   # dotted name -> (owner, attribute, guard); the originals live only in the guards
_active: dict = {"rule": None, "topic": None, "record": None}


@contextmanager
def shortcuts_blocked(topic: str | None, record: dict):
    """While a call of `topic`'s code runs, the ready-made versions of what it teaches raise (and
    the call is recorded, even if learner code catches the error). The guards are installed once;
    a call only says which rule is active."""
    rule = topics.shortcut_rule(topic) if topic in topics.NAMES else None
    before = dict(_active)
    _active.update(rule=rule, topic=topic, record=record)
    try:
        yield
    finally:
        _active.update(before)
        removed = guards_removed()
        if removed and rule is not None and set(removed) & set(rule.runtime):
            record["shortcut"] = record["shortcut"] or f"{removed[0]} (after removing the kata's guard on it)"


def guards_removed() -> list[str]:
    """The guards learner code has taken off (they are put back): a call of the original is then
    invisible, so the removal itself is what gets reported."""
    removed = [dotted for dotted, (owner, attr, guard) in _guards.items() if getattr(owner, attr, None) is not guard]
    for dotted in removed:
        owner, attr, guard = _guards[dotted]
        setattr(owner, attr, guard)
    return removed


def _install(rule) -> None:
    for dotted in rule.runtime:
        if dotted in _guards:
            continue
        owner_name, _, attr = dotted.rpartition(".")
        owner = _resolve(owner_name)
        original = getattr(owner, attr, None)
        if original is None:  # not in this torch's version: nothing to refuse
            continue
        guard = _guard(dotted, original)
        _guards[dotted] = (owner, attr, guard)
        setattr(owner, attr, guard)


def _guard(dotted: str, original):
    shown = dotted.replace("torch.nn.functional.", "F.")

    def guarded(*args, **kwargs):
        rule = _active["rule"]
        if rule is not None and dotted in rule.runtime:
            record = _active["record"]
            record["shortcut"] = record["shortcut"] or shown
            raise ShortcutError(f"your {_active['topic']} code called {shown}: {rule.message(_active['topic'])}")
        return original(*args, **kwargs)
    guarded.__name__ = getattr(original, "__name__", shown)  # no __wrapped__: nothing leads back to the original
    return guarded


def _resolve(dotted: str):
    """torch.nn.functional -> the module; torch.nn.BatchNorm1d -> the class."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


class ShortcutError(RuntimeError):
    pass


Server.run.__defaults__ = (_mutations, shortcuts_blocked)


# ---------------------------------------------------------------- errors
def describe(e: BaseException) -> dict:
    """An exception as plain data: its type, the builtin type the test process raises, its
    message, and the frames of learner code it passed through."""
    kind = type(e)
    base = next((c.__name__ for c in kind.__mro__ if c.__name__ in wire.BUILTIN_ERRORS
                 and wire.BUILTIN_ERRORS[c.__name__] is c), None)
    out = {"type": f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."),
           "base": base, "message": unstaged(safe_str(e))[:2000], "frames": _frames(e)}
    if isinstance(e, ShortcutError):
        out["mistake"] = "shortcut"
    if isinstance(e, SystemExit):
        out["escape"] = f"called sys.exit({safe_repr(e.code, 40)})" if e.code is not None else "called sys.exit()"
    elif isinstance(e, KeyboardInterrupt):
        out["escape"] = "raised KeyboardInterrupt"
    elif isinstance(e, GeneratorExit):
        out["escape"] = "raised GeneratorExit"
    elif not isinstance(e, Exception):  # pytest.skip, pytest.exit, pytest.fail: BaseException subclasses
        what = {"Skipped": "called pytest.skip()", "Exit": "called pytest.exit()", "Failed": "called pytest.fail()",
                "XFailed": "called pytest.xfail()"}.get(kind.__name__, f"raised {kind.__name__}")
        out["escape"] = what
    return out


def _frames(e: BaseException) -> list[list]:
    """(file, line, function, source line) for frames outside the kata and the libraries."""
    kata = str(Path(__file__).resolve().parent)
    frames = []
    for frame in traceback.extract_tb(e.__traceback__):
        name = frame.filename
        if name.startswith(kata) or "site-packages" in name or name.startswith("<frozen"):
            continue
        frames.append([unstaged(name), frame.lineno, frame.name, (frame.line or "").strip()[:200]])
    return frames[-8:]


# ---------------------------------------------------------------- staged implementation folders
_stage_of: dict[str, str] = {}  # the staged copy of an implementation folder (in the sandbox) -> its real path


def staged(impl: str) -> str:
    """Where `impl` is inside the sandbox: kata/sandbox.py copies each implementation folder into
    the staging folder (KATA_STAGE); outside a sandbox, the folder itself."""
    stage = os.environ.get("KATA_STAGE")
    if not stage or impl.startswith("bundle:"):
        return impl
    path = os.path.join(stage, stage_key(impl))
    _stage_of[path] = impl
    return path


def unstaged(text: str) -> str:
    """A path (or a message) with the staged folder's name replaced by the real one."""
    for path, impl in _stage_of.items():
        text = text.replace(path, impl)
    return text


def safe_str(e) -> str:
    try:
        return str(e)
    except BaseException:  # noqa: BLE001 - a learner's __str__ is untrusted too
        return f"<{type(e).__name__}>"


# ---------------------------------------------------------------- entry points
MEMORY = 768 << 20  # bytes of address space a learner process may map beyond what it has at start
FILE_SIZE = 4 << 20  # bytes: its log (stdout and stderr) and any file it writes


def warm() -> None:
    """Import now what a learner process may need later, while the kata's files can still be read:
    a learner process as another user (or in the sandbox) may no longer be able to."""
    import torch.nn.functional  # noqa: F401
    import torch.nn.init  # noqa: F401
    from kata import loader, notebook  # noqa: F401 - notebook: a bundle's cell lines (load_bundle)
    for rule in topics.SHORTCUTS.values():
        _install(rule)


def prepare() -> None:
    """Settings of the learner process, before any learner code: one torch thread (the calls are
    small), no bytecode written beside the learner's files, every import done, then the user named
    by KATA_LEARNER_USER (or the sandbox's own uid) when started as root, limits on memory, file
    size and processes, a stack dump on SIGUSR1 (the test process sends it at a deadline, to learn
    which learner function hung), and death with the test process."""
    torch.set_num_threads(1)
    sys.dont_write_bytecode = True
    warm()
    uid = _learner_uid()
    if uid is not None:
        os.setgroups([])
        os.setgid(uid[1])
        os.setuid(uid[0])
    limit_resources()
    faulthandler.enable(file=sys.stderr, all_threads=False)  # a crash shows where
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)  # the test process asks at a deadline
    die_with_parent()  # after setuid, which clears the setting


def _learner_uid():
    """(uid, gid) learner code runs as, or None: only a root run switches."""
    if os.geteuid() != 0:
        return None
    if os.environ.get("KATA_STAGE"):  # in the sandbox: a uid of its own
        return SANDBOX_UID, SANDBOX_UID
    user = os.environ.get("KATA_LEARNER_USER")
    if not user:
        return None
    import pwd
    entry = pwd.getpwnam(user)  # a missing user fails the process: no learner code runs as root
    return entry.pw_uid, entry.pw_gid


def limit_resources() -> None:
    """Caps the learner process cannot raise: address space, file size (SIGXFSZ ignored, so a write
    past the cap fails instead of killing the process), processes, no core files."""
    mapped = _mapped()
    limits = [(resource.RLIMIT_AS, mapped + MEMORY), (resource.RLIMIT_FSIZE, FILE_SIZE), (resource.RLIMIT_CORE, 0)]
    if os.getuid() != 0:  # RLIMIT_NPROC does not hold for root
        limits.append((resource.RLIMIT_NPROC, int(os.environ.get("KATA_NPROC", "0")) or _processes() + PROCESSES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for which, value in limits:
        try:
            soft, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _mapped() -> int:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            line = next(x for x in f if x.startswith("VmSize:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return 1 << 30


def _processes() -> int:
    """Processes of this uid now (RLIMIT_NPROC counts them all)."""
    uid, n = os.getuid(), 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            n += entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid
        except OSError:
            pass
    return n


def die_with_parent() -> None:
    """On Linux, the kernel kills the learner process when the test process dies (a hung learner
    would otherwise spin on after its parent is gone)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def load_bundle(path: str | None) -> dict | None:
    """The notebook's objects, pickled by the notebook (cloudpickle): unpickled here, in the learner
    process, never in the test process."""
    if not path:
        return None
    import cloudpickle

    from kata.notebook import show_cell_lines
    with open(path, "rb") as f:
        bundle = cloudpickle.load(f)
    show_cell_lines(bundle, Path(path).with_name("cells.json"))  # a traceback then shows the cell's line
    return bundle


def run_forked(fd_in: int, fd_out: int, log_fd: int, bundle_path: str | None = None) -> None:
    """Body of a forked learner process (from the test process, or the sandbox's zygote); never
    returns. It says "ready" once set up: a process that ends before is the kata's failure."""
    code = 0
    try:
        os.setsid()  # a session and process group of its own: no terminal to write to, and stopping the
        # group stops what learner code started in it
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        _close_inherited(keep=(0, 1, 2, fd_in, fd_out))
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the process ends with os._exit
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        prepare()
        channel = wire.Channel(fd_in, fd_out)
        channel.send({"op": "ready"})
        Server(channel, load_bundle(bundle_path)).serve()
    except BaseException:  # noqa: BLE001 - report and leave; the test process sees the pipe close
        code = 70
        traceback.print_exc()
    finally:
        os._exit(code)


def _close_inherited(keep) -> None:
    """A forked learner process inherits every descriptor of the test process (pytest's saved
    terminal, its capture files, other pipes): it keeps only its own, so learner code can write to
    nothing but its log and its one reply pipe."""
    for fd in sorted(set(range(3, _max_fd())) - set(keep)):
        try:
            os.close(fd)
        except OSError:
            pass


def _max_fd() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 256


def main(argv) -> int:
    fd_in, fd_out = int(argv[0]), int(argv[1])
    prepare()
    channel = wire.Channel(fd_in, fd_out)
    channel.send({"op": "ready"})
    bundle = load_bundle(argv[2] if len(argv) > 2 else None)
    gc.freeze()
    Server(channel, bundle).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
