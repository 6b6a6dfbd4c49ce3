"""Assertions that teach, shared by the topic tests.

Every check names the call, what came back and what was expected. Which catalogued mistake a
failure behaves like is the grader's business (kata/hints/<topic>.toml), not the tests': no test
carries a mistake's prose.

Tests never compare with solutions/: expected values come from torch or from a formula written
in the test. Values come back from the learner process as plain
data (kata/remote.py): floats as floats, tensors as tensors, learner objects as handles.
"""
from __future__ import annotations

import ast
import math
import os
import zlib
from contextlib import contextmanager

import torch

from kata import topics
from kata.failure import KataFailure
from kata.remote import Handle, same_object, shares_memory_with, vjp  # noqa: F401 - the tests' one import
from kata.wire import safe_repr  # noqa: F401 - the tests use it too

DEFAULT_SEED = 1234
F64_TOL = dict(rtol=1e-7, atol=1e-7)  # float64 throughout: torch's default float64 tolerance


def base_seed() -> int:
    """KATA_SEED, else the fixed default: every random draw in the suite derives from it."""
    return int(os.environ.get("KATA_SEED") or DEFAULT_SEED)


def seed_for(key: str) -> int:
    """A per-test seed: independent streams for different tests, reproducible for one KATA_SEED."""
    return (base_seed() * 1_000_003 + zlib.crc32(key.encode())) % (2**63)


def fail(message: str, mistake: str | None = None) -> None:
    __tracebackhide__ = True  # plain pytest shows the lesson, not this helper's frame
    raise KataFailure(message, mistake)


# ---------------------------------------------------------------- describing values
def type_name(obj) -> str:
    """The type a learner value had: a handle names the learner object's type."""
    return obj.kata_type if isinstance(obj, Handle) else type(obj).__name__


def dims(t) -> str:
    """'[32,6]' for a tensor of shape (32, 6)."""
    return "[" + ",".join(str(d) for d in t.shape) + "]"


def call(fn: str, *args, **kwargs) -> str:
    """How a call is shown in messages: call('f', ('x', x), threshold=0.99) -> 'f(x[32,6], threshold=0.99)'.
    Positional arguments are (name, value) pairs; tensors show their shape, others their value."""
    def show(name, value, keyword):
        if isinstance(value, torch.Tensor):
            return f"{name}{dims(value)}" if value.ndim else f"{name}={value.item():.4g}"
        return f"{name}={safe_repr(value, 40)}" if keyword else safe_repr(value, 40)
    parts = [show(n, v, False) for n, v in args] + [show(k, v, True) for k, v in kwargs.items()]
    return f"{fn}({', '.join(parts)})"


def fmt(value) -> str:
    """Short human form of a float or a tensor's values."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return f"{value.item():.6g}"
        flat = value.detach().double().flatten()
        head = ", ".join(f"{v:.4g}" for v in flat[:4].tolist())
        return f"tensor{dims(value)} [{head}{', ...' if flat.numel() > 4 else ''}]"
    return safe_repr(value)


# ---------------------------------------------------------------- types
def expect_float(out, call: str) -> float:
    """The contract says a float (numpy.float64 and other float subclasses cross the boundary as
    their value); a tensor, even a 0-dim one, is not a float."""
    __tracebackhide__ = True
    if not isinstance(out, float) or isinstance(out, bool):
        hint = " Use .item() to turn a one-element tensor into a float." if isinstance(out, torch.Tensor) else ""
        fail(f"{call} returned {type_name(out)} {safe_repr(out)}, expected a Python float.{hint}")
    return float(out)


def expect_tensor(out, call: str, shape=None, dtype=None) -> torch.Tensor:
    """A torch.Tensor, with the given shape and dtype."""
    __tracebackhide__ = True
    if not isinstance(out, torch.Tensor):
        fail(f"{call} returned {type_name(out)} {safe_repr(out)}, expected a torch.Tensor")
    if shape is not None and tuple(out.shape) != tuple(shape):
        fail(f"{call} returned shape {tuple(out.shape)}, expected {tuple(shape)}")
    if dtype is not None and out.dtype != dtype:
        fail(f"{call} returned dtype {out.dtype}, expected {dtype}")
    return out


def expect_like(out, expected, call: str) -> None:
    """`out` is of `expected`'s kind: a float, or a tensor of its shape and dtype. The hygiene tests'
    check of what a call returns under each global state: its value is the other tests' lesson."""
    __tracebackhide__ = True
    if isinstance(expected, float):
        expect_float(out, call)
    else:
        expect_tensor(out, call, shape=expected.shape, dtype=expected.dtype)


# ---------------------------------------------------------------- values
def _close(a, b, rtol: float, atol: float) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def expect_close(out, expected, *, call: str, rtol: float, atol: float, what: str = "returned",
                 why: str = "") -> None:
    """`out` equals `expected` (a float or a tensor from torch or a formula) within rtol/atol, which
    every call states (they follow the dtype: F64_TOL for float64). Floats must be floats and
    tensors tensors of the expected shape."""
    __tracebackhide__ = True
    if isinstance(expected, float):
        expect_float(out, call)
    else:
        expect_tensor(out, call, shape=expected.shape)
    if _close(out.detach() if isinstance(out, torch.Tensor) else out, expected, rtol, atol):
        return
    message = f"{call} {what} {fmt(out)}, expected {fmt(expected)}"
    if isinstance(expected, torch.Tensor) and expected.numel() > 1:
        diff = (out.detach().double() - expected.double()).abs()
        diff = torch.nan_to_num(diff, nan=math.inf)
        index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        message += (f"; largest difference at {list(index)}: got {out[index].item():.6g}, "
                    f"expected {expected[index].item():.6g}")
    fail(message + (f": {why}" if why else ""))


def expect(condition: bool, message: str) -> None:
    """A plain check with a teaching message (for properties that are not one value)."""
    __tracebackhide__ = True
    if not condition:
        fail(message)


@contextmanager
def default_dtype(dtype):
    """Inside, torch.zeros / torch.randn / ... make `dtype` tensors: the learner's modules are built
    in float64 this way, so they can be compared with torch at float64 tolerance."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


# ---------------------------------------------------------------- inputs are not touched
@contextmanager
def inputs_unchanged(call: str, **inputs):
    """Fail if the code inside changes any of `inputs` (tensors, or lists of tensors) in place."""
    __tracebackhide__ = True
    before = {name: _snapshot(value) for name, value in inputs.items()}
    yield
    for name, value in inputs.items():
        if not _same(_snapshot(value), before[name]):
            fail(f"{call} changed its argument {name} in place; the contract says every function "
                 "returns new tensors and leaves its inputs unchanged (x -= mean or W *= scale "
                 "rewrite the caller's tensor: write y = x - mean instead)")


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    return value


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):  # NaN counts as equal to NaN: a NaN input left alone is unchanged
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a.isnan(), b.isnan())) and bool(torch.equal(a.nan_to_num(), b.nan_to_num())))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b or a == b


def expect_new_tensor(out, call: str, **inputs) -> None:
    """`out` must not be one of the inputs or a view of one (it would change whenever they do)."""
    __tracebackhide__ = True
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and isinstance(out, torch.Tensor) and value.numel() and out.numel():
            if out is value or shares_memory_with(out, value) \
                    or out.untyped_storage().data_ptr() == value.untyped_storage().data_ptr():
                fail(f"{call} returned its argument {name} itself (or a view of it), expected a new "
                     "tensor: the caller's tensor would change whenever yours does")


# ---------------------------------------------------------------- global state
def expect_global_state_kept(run, call: str, check) -> None:
    """`run()` (one learner call) leaves torch's grad mode and default dtype as it found them,
    whichever they were, and `check(result)` holds each time: with autograd on and off, and with
    float32 and float64 defaults."""
    __tracebackhide__ = True
    for grad in (True, False):
        for dtype in (torch.float32, torch.float64):
            state = f"with autograd {'on' if grad else 'off'} and default dtype {dtype}"
            with torch.set_grad_enabled(grad), default_dtype(dtype):
                out = run()
                grad_after, dtype_after = torch.is_grad_enabled(), torch.get_default_dtype()
                expect(grad_after == grad,
                       f"{call} {state} left autograd {'on' if grad_after else 'off'}: use `with torch.no_grad():` "
                       "(it restores the mode on the way out), not torch.set_grad_enabled(False) on its own")
                expect(dtype_after == dtype,
                       f"{call} {state} left the default dtype {dtype_after}: create tensors with dtype=... "
                       "instead of torch.set_default_dtype, which changes every later tensor of the program")
                check(out)


def expect_global_rng_untouched(run, call: str, gen: torch.Generator) -> None:
    """`run()`, given a generator, leaves torch's global random generator where it was (checked
    from a global state of the test's own, drawn from `gen`, so that any change to it shows)."""
    __tracebackhide__ = True
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
        before = torch.get_rng_state()
        run()
        after = torch.get_rng_state()
    expect(torch.equal(after, before),
           f"{call} moved torch's global random generator although a generator was given: draw with "
           "torch.randn(..., generator=generator), and do not call torch.manual_seed")


# ---------------------------------------------------------------- no shortcuts
def _dotted_names(tree: ast.AST):
    """Every dotted name the source mentions: attribute chains and `from X import Y` as X.Y."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                parts.append(cur.id)
            yield ".".join(reversed(parts)), node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _mentions(dotted: str, forbidden: str) -> bool:
    """True if `forbidden`'s components appear contiguously in `dotted` (nn.init in torch.nn.init.x);
    a one-word name also inside a longer word of an attribute chain (batch_norm in
    torch.native_batch_norm), except on the learner's own `self.`."""
    have, want = dotted.split("."), forbidden.split(".")
    if len(want) == 1 and len(have) > 1 and have[0] != "self":
        return any(want[0] in part for part in have[1:])
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def expect_no_shortcut_source(impl, topic: str) -> None:
    """The learner's source must not name the built-in that the topic teaches (read with ast here;
    the learner process also refuses the call while the topic's code runs)."""
    __tracebackhide__ = True
    rule = topics.shortcut_rule(topic)
    source, where = impl.source(topic)
    if source is None or rule is None:
        return
    tree = ast.parse(source, filename=where)
    for dotted, line in _dotted_names(tree):
        for name in rule.source:
            if _mentions(dotted, name):
                # read from the source, not replayed: the one failure a test names itself (the
                # catalog's "shortcut" entry, where the topic has one, gives the words)
                fail(f"{where}:{line} uses {dotted}: {rule.message(topic)}", mistake="shortcut")
