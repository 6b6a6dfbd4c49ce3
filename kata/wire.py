"""The format of what crosses between the test process and the learner process: plain data only.

A message is a JSON header plus raw byte blobs for tensor data. The decoder builds nothing but
None, bools, ints, floats, strings, lists, tuples, dicts, torch tensors of a fixed set of dtypes,
and small marker objects (`Ref`) that stand for things that stay on the other side (a learner
object, a callable of the test's). It cannot run code: JSON is parsed by the standard library and
tensor bytes are copied into a tensor of a whitelisted dtype, with every length checked. Plain
pickle, cloudpickle or torch.load without weights_only would run whatever the sender wrote.

    frame = struct('<QI', total length, header length) + header JSON + blob bytes

Encoding is where the two sides differ: the learner side turns anything that is not plain data
into a handle (`Ref("handle", ...)`), a float subclass such as numpy.float64 into its float value,
and a tensor subclass or Parameter into a plain tensor; see `Encoder`.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

import torch

MAX_MESSAGE = 2**31  # bytes a request to the learner process may have (the test side is trusted)
MAX_REPLY = 8 << 20  # bytes a message from the learner process may have: the largest the tests need is
# about 1 MB; a longer one is refused before it is read
CHUNK = 1 << 20      # a frame is read in pieces of this size: memory grows with what arrives, never with
# the length a frame announces
MAX_DEPTH = 64       # nesting of lists, tuples and dicts
_PREFIX = struct.Struct("<QI")

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}


def safe_repr(obj, limit: int = 80) -> str:
    """repr() that survives learner objects whose __repr__ raises or runs long (both sides use it)."""
    try:
        text = repr(obj)
    except BaseException:  # noqa: BLE001 - a learner's __repr__ is untrusted too
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# exceptions of learner code that the test side raises as themselves (a ValueError for a ValueError,
# RuntimeError for torch's errors), so that a test catches them as it would in one process
BUILTIN_ERRORS = {c.__name__: c for c in (
    ArithmeticError, AssertionError, AttributeError, EOFError, ImportError, IndexError, KeyError, LookupError,
    MemoryError, ModuleNotFoundError, NameError, NotImplementedError, OSError, OverflowError, RecursionError,
    RuntimeError, StopIteration, TypeError, ValueError, ZeroDivisionError)}


class WireError(ValueError):
    """A message that is not well-formed plain data: the sender is broken or lying."""


@dataclass(frozen=True)
class Ref:
    """Something that stays on the side it lives on: kind 'handle' (a learner object, with its
    type name and repr), 'callback' (a callable of the test's) or 'remote' (a learner module's
    attribute). A torch.Generator travels as its state instead ("gen")."""
    kind: str
    id: int
    info: dict = field(default_factory=dict, compare=False, hash=False)


# ---------------------------------------------------------------- tensors
def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a plain CPU tensor, row-major."""
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if t.numel() == 0:
        return b""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_from(blob: bytes, dtype_name: str, shape) -> torch.Tensor:
    """A new tensor from `blob`, after checking the dtype name, the shape and the length."""
    dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise WireError(f"tensor dtype {dtype_name!r} is not one the kata accepts")
    if (not isinstance(shape, list) or len(shape) > MAX_DEPTH
            or not all(type(d) is int and 0 <= d < 2**40 for d in shape)):
        raise WireError(f"bad tensor shape {shape!r}")
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != len(blob):
        raise WireError(f"tensor of shape {shape} and dtype {dtype_name} needs {numel * itemsize} bytes, got {len(blob)}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype).reshape(shape)  # a copy: the
    # message buffer is not kept alive by the tensor, and learner code may write to it


# ---------------------------------------------------------------- encoding
class Encoder:
    """Turns a value into (header object, blobs). `other(value)` decides what becomes of anything
    that is not plain data (the learner side makes a handle; the test side a callback or an error).
    Every tensor and list encoded is remembered in `tensors` / `lists`, by position, so that the
    receiver can report changes made to them in place."""

    def __init__(self, other, tensor_meta=None, generators: bool = False):
        self.blobs: list[bytes] = []
        self.tensors: list[torch.Tensor] = []
        self.lists: list[list] = []
        self.generators: list[torch.Generator] = []  # sent with their state (the test side only)
        self.other = other
        self.tensor_meta = tensor_meta  # extra fields for a tensor (the learner side adds oid, alias)
        self.send_generators = generators

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        t = type(value)
        if value is None or t is bool or t is str:
            return value
        if t is int:
            return value
        if t is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, torch.Tensor):
            return self.tensor(value, depth)
        if t is list:
            self.lists.append(value)
            return [self.encode(v, depth + 1) for v in value]
        if t is tuple:
            return {"$": "tuple", "v": [self.encode(v, depth + 1) for v in value]}
        if t is dict:
            return {"$": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, Ref):
            return {"$": "ref", "kind": value.kind, "id": value.id, "info": value.info}
        if self.send_generators and isinstance(value, torch.Generator):
            return self.generator(value)
        return self.encode(self.other(value), depth + 1)

    def generator(self, g: torch.Generator) -> dict:
        """A generator travels as its state; the receiver sends the state back after the call."""
        for k, known in enumerate(self.generators):
            if known is g:
                return {"$": "gen", "k": k}
        if g.device.type != "cpu":
            raise WireError("only a CPU torch.Generator can be sent")
        self.generators.append(g)
        self.blobs.append(tensor_bytes(g.get_state()))
        return {"$": "gen", "k": len(self.generators) - 1, "b": len(self.blobs) - 1}

    def tensor(self, value: torch.Tensor, depth: int) -> dict:
        base = value.as_subclass(torch.Tensor) if type(value) not in (torch.Tensor, torch.nn.Parameter) else value
        if base.layout != torch.strided or base.is_quantized or base.is_meta or base.is_nested:
            raise WireError(f"a {base.layout} tensor cannot be sent; use a dense tensor")
        cpu = base.detach().cpu()
        name = str(cpu.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise WireError(f"a {cpu.dtype} tensor cannot be sent")
        self.tensors.append(value)
        self.blobs.append(tensor_bytes(cpu))
        out = {"$": "tensor", "b": len(self.blobs) - 1, "dtype": name, "shape": list(cpu.shape),
               "rg": bool(base.requires_grad)}
        if base.requires_grad:
            out["leaf"] = bool(base.is_leaf)
            if base.grad_fn is not None:
                out["gf"] = type(base.grad_fn).__name__
        grad = base.grad if base.is_leaf else None  # a non-leaf's .grad is not kept (and warns)
        if grad is not None:
            out["grad"] = self.tensor(grad, depth + 1)
        if self.tensor_meta is not None:
            out.update(self.tensor_meta(value))
        return out


ALIGN = 16  # each blob starts at a multiple of this in the frame's body, so tensor views are aligned


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pack(header: dict, blobs) -> bytes:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    parts = [head, b"\0" * (_padded(len(head)) - len(head))]
    for blob in blobs:
        parts += [blob, b"\0" * (_padded(len(blob)) - len(blob))]
    body = b"".join(parts)
    return _PREFIX.pack(len(body), len(head)) + body


# ---------------------------------------------------------------- decoding
class Decoder:
    """Builds plain values from a header object and its blobs; `ref(Ref)` maps a reference to the
    object that stands for it on this side. Decoded tensors are remembered in `tensors`, in order."""

    def __init__(self, blobs: list[bytes], ref, generator=None):
        self.blobs = blobs
        self.ref = ref
        self.generator = generator  # (index, state tensor) -> torch.Generator; None: refuse generators
        self.generators: dict[int, object] = {}
        self.tensors: list[torch.Tensor] = []
        self.sources: list = []   # the bytes each tensor was made from, to see later changes
        self.lists: list[list] = []
        self.on_tensor = None     # (tensor, header fields) -> None: the test side reads oid and alias

    def decode(self, obj, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        t = type(obj)
        if obj is None or t in (bool, int, float, str):
            return obj
        if t is list:
            out = []
            self.lists.append(out)
            out.extend(self.decode(v, depth + 1) for v in obj)
            return out
        if t is not dict:
            raise WireError(f"unexpected {t.__name__} in a message")
        kind = obj.get("$")
        if kind == "tuple":
            return tuple(self.decode(v, depth + 1) for v in _list(obj.get("v")))
        if kind == "dict":
            pairs = [(self.decode(k, depth + 1), self.decode(v, depth + 1)) for k, v in map(_pair, _list(obj.get("v")))]
            try:
                return dict(pairs)
            except TypeError:
                raise WireError("a dict key that cannot be hashed") from None
        if kind == "float":
            if obj.get("v") not in ("nan", "inf", "-inf"):
                raise WireError(f"bad float {obj.get('v')!r}")
            return float(obj["v"])
        if kind == "tensor":
            return self.tensor(obj, depth)
        if kind == "gen":
            return self.decode_generator(obj)
        if kind == "ref":
            if obj.get("kind") not in ("handle", "callback", "remote") or type(obj.get("id")) is not int:
                raise WireError(f"bad reference {obj!r}"[:200])
            info = obj.get("info") if type(obj.get("info")) is dict else {}
            return self.ref(Ref(obj["kind"], obj["id"], info))
        raise WireError(f"unknown tag {kind!r}"[:100])

    def tensor(self, obj: dict, depth: int) -> torch.Tensor:
        blob = self.blob(obj.get("b"))
        t = tensor_from(blob, obj.get("dtype"), obj.get("shape"))
        if obj.get("rg") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_()
        self.tensors.append(t)  # before its grad: the same order as the encoder's
        self.sources.append(blob)
        if self.on_tensor is not None:
            self.on_tensor(t, obj)
        if "grad" in obj:
            grad = self.tensor(_dict(obj["grad"]), depth + 1)
            if grad.shape == t.shape and grad.dtype == t.dtype:
                t.grad = grad
        return t

    def decode_generator(self, obj: dict):
        k = obj.get("k")
        if self.generator is None or type(k) is not int:
            raise WireError("a generator cannot be sent this way")
        if k not in self.generators:
            state = tensor_from(self.blob(obj.get("b")), "uint8", [len(self.blob(obj.get("b")))])
            self.generators[k] = self.generator(k, state)
        return self.generators[k]

    def blob(self, index) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise WireError("a value without its data")
        return self.blobs[index]


def _list(v) -> list:
    if type(v) is not list:
        raise WireError("expected a list")
    return v


def _pair(v):
    if type(v) is not list or len(v) != 2:
        raise WireError("expected a key-value pair")
    return v


def _dict(v) -> dict:
    if type(v) is not dict or v.get("$") != "tensor":
        raise WireError("expected a tensor")
    return v


# ---------------------------------------------------------------- the pipe
class Channel:
    """One direction of messages on a file descriptor."""

    def __init__(self, fd_in: int | None = None, fd_out: int | None = None, limit: int = MAX_MESSAGE):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.limit = limit  # the longest message this side accepts

    def send(self, header: dict, blobs=()) -> None:
        data = memoryview(pack(header, blobs))
        while data:
            n = os.write(self.fd_out, data)
            data = data[n:]

    def recv(self, wait=None):
        """(header, blobs), blobs as views of the message's buffer; `wait(fd)` blocks until fd
        is readable (it raises on a deadline). Raises EOFError when the other side has gone."""
        total, head_len = _PREFIX.unpack(self._read(_PREFIX.size, wait))
        if total > self.limit or head_len > total:
            raise WireError(f"a message of {total} bytes is refused (at most {self.limit} are accepted)")
        body = memoryview(self._read(total, wait))
        try:
            header = json.loads(bytes(body[:head_len]))
        except (ValueError, RecursionError) as e:
            raise WireError(f"not a JSON header: {e}") from None
        if type(header) is not dict:
            raise WireError("the header is not an object")
        sizes = header.get("blobs", [])
        if type(sizes) is not list or not all(type(n) is int and n >= 0 for n in sizes):
            raise WireError("bad blob sizes")
        blobs, at = [], _padded(head_len)
        for n in sizes:
            if at + n > total:
                raise WireError("blob sizes do not add up")
            blobs.append(body[at:at + n])
            at += _padded(n)
        return header, blobs

    def _read(self, n: int, wait) -> bytearray:
        buf = bytearray()
        while len(buf) < n:
            if wait is not None:
                wait(self.fd_in)
            piece = os.read(self.fd_in, min(CHUNK, n - len(buf)))
            if not piece:
                raise EOFError
            buf += piece
        return buf


def message(header: dict, encoder: Encoder) -> tuple[dict, list[bytes]]:
    """The header with the blob sizes the receiver checks."""
    header["blobs"] = [len(b) for b in encoder.blobs]
    return header, encoder.blobs
