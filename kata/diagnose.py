"""Diagnosis by behaviour: which catalogued mistakes does the learner's code behave like?

A catalogued mistake (kata/hints/<topic>.toml) is the reference with a patch: the kata's own code.
While a test runs, kata.remote records every request the learner process got and its reply (an
`Exchange`: the arguments, the RNG and generator states, the objects made by earlier calls). When
the test fails, the same requests are replayed, in one trusted process, against the reference and
against each mistake of the topic (and of the topics it builds on). A mistake explains the failure
when its replies match the learner's reply for reply, up to the failing check, and the reference's
do not. Nothing is guessed: a failure that no mistake reproduces stays unexplained.

    matches(topic, tape)        # the mistakes whose replay gives the learner's values (kata.plugin)
    causes(records, topic)      # the fewest causes that explain a topic's failing tests (kata.grading)

Replies are compared as the tests would see them:
- tensors by shape, dtype, requires_grad and value, within the dtype's rounding (TOLERANCE);
  a call that drew random numbers is compared by the statistic a test of it uses, its mean and std;
- floats within 1e-6 relative (a float may come from float32 arithmetic);
- objects (handles) and tensor identities after canonicalising (first appearance on each side);
- what the call did to its arguments (in-place changes, generators advanced), the grad mode and
  default dtype it left, and the exception's builtin class when it raised.

The replies of each mistake are cached under `.kata/diagnosis/`, keyed by the kata's content hash,
torch's version, the mistake and the canonical requests: a second grade of the same code replays
nothing. The cache holds wire-format frames (kata/wire.py), never pickles.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

import torch

from kata import topics, wire

# relative and absolute tolerance by dtype: a few units of the dtype's last place, so another order of
# the same arithmetic matches and a different formula (N-1 for N at N=32 is 1.6%) does not
TOLERANCE = {torch.float64: (1e-7, 1e-9), torch.float32: (1e-4, 1e-6), torch.float16: (1e-2, 1e-3),
             torch.bfloat16: (2e-2, 1e-2)}
FLOAT_RTOL = 1e-6
# random draws of n values are compared by mean and std: two independent estimates differ by about
# sigma * sqrt(2/n) in the mean and sigma * sqrt(1/n) in the std (the std of a sample std is
# sigma / sqrt(2n)); 6 of those is a bound a correct comparison exceeds with odds below 1e-8
SIGMAS = 6.0
MIN_DRAWS = 20  # below this a statistic says too little: the values must match instead


# ---------------------------------------------------------------- the candidates
class Candidate:
    """A mistake to replay: its qualified id (`topic/id` when it is another topic's), and the
    implementation folder that makes it."""

    def __init__(self, topic: str, mistake: topics.Mistake, qualified: str):
        self.topic, self.mistake, self.id = topic, mistake, qualified

    def folder(self) -> Path:
        return mutant_folder(self.mistake)


def candidates(topic: str) -> list[Candidate]:
    """The topic's mistakes, then those of the topics its code builds on (bias_redundancy uses
    modules: a wrong Linear shows in its tests too)."""
    out = [Candidate(topic, m, m.id) for m in _catalog(topic)]
    for used in topics.get(topic).uses:
        out += [Candidate(used, m, f"{used}/{m.id}") for m in _catalog(used)]
    return out


def mutant_folder(mistake: topics.Mistake) -> Path:
    """The reference with the mistake's patch, built once per process in a private folder: this
    code runs unsandboxed in the replay process, so it is never read back from a folder learner
    code could have written to."""
    from kata.catalog import apply
    from kata.loader import BUILTIN
    folder = _private() / f"{mistake.topic}-{mistake.id}"
    if not folder.is_dir():
        reference = BUILTIN["solutions"]
        shutil.copytree(reference, folder, ignore=shutil.ignore_patterns("__pycache__"))
        path = folder / f"{mistake.topic}.py"
        path.write_text(apply(mistake, path.read_text(encoding="utf-8")), encoding="utf-8")
    return folder


_mutants: Path | None = None


def _private() -> Path:
    global _mutants
    if _mutants is None:
        import atexit
        import tempfile
        _mutants = Path(tempfile.mkdtemp(prefix="kata-mutants-"))  # mode 0700
        atexit.register(shutil.rmtree, _mutants, True)
    return _mutants


def _cache_root() -> Path | None:
    """.kata/diagnosis/ beside the learner's work (with the hint levels: one decision), or None
    where it cannot be written (then the cache lives in memory only)."""
    from kata.hintstate import state_dir
    root = state_dir() / "diagnosis"
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / ".writable").touch()
        return root
    except OSError:
        return None


# ---------------------------------------------------------------- the trusted process
class Replayer:
    """One process that runs the reference and the mutants (kata code only, never the learner's):
    the learner process's Server, forked from this process without a sandbox, because nothing in
    it is untrusted."""

    def __init__(self):
        self.proc = _trusted_process()

    def replay(self, folder: Path, tape: list, key: str) -> list | None:
        """The replies (header, blobs) of `folder`'s code to the tape's requests, or None when the
        replay cannot go on (an object the learner made that the mistake did not)."""
        proc, handles, replies = self.proc, {}, []
        for k, ex in enumerate(tape):
            header = _retarget(ex.header, str(folder), handles)
            if header is None:
                return None
            blobs = list(ex.blobs) + [ex.rng]
            header.setdefault("state", {})["rng"] = len(blobs) - 1
            encoder = wire.Encoder(proc.other)
            watcher = type(ex)(header, blobs, ex.rng, ex.callbacks)
            encoder.blobs, encoder.callbacks = blobs, watcher.observed(ex.callbacks)
            try:
                reply, decoder, _ = proc.request(header, encoder, f"{key}:{k}", "a catalogued mistake")
            except BaseException:  # noqa: BLE001 - a mutant that hangs or crashes explains nothing
                return None
            reply["called_back"] = watcher.called_back
            got = (reply, [bytes(b) for b in decoder.blobs])
            replies.append(got)
            _learn_handles(ex, got, handles)
        proc.release.extend(handles.values())
        return replies

    def stop(self) -> None:
        self.proc.stop()


def _retarget(header: dict, impl: str, handles: dict) -> dict | None:
    """The learner's request, for another implementation: its functions from `impl`, its objects
    mapped to the ones the replay made. None when it names an object the replay has not made."""
    out = json.loads(json.dumps(header))
    target = out.get("target") or {}
    if "impl" in target:
        target["impl"] = impl
    if "handle" in target:
        if target["handle"] not in handles:
            return None
        target["handle"] = handles[target["handle"]]
    missing = []

    def walk(v):
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            if v.get("$") == "ref" and v.get("kind") == "handle":
                if v.get("id") not in handles:
                    missing.append(v.get("id"))
                    return v
                return {**v, "id": handles[v["id"]], "info": {}}
            if v.get("$") == "ref" and v.get("kind") == "remote":
                return {**v, "info": {**v.get("info", {}), "impl": impl}}
            return {k: walk(x) for k, x in v.items()}
        return v
    for field in ("args", "kwargs"):
        if field in out:
            out[field] = walk(out[field])
    return None if missing else out


def _learn_handles(ex, got, handles: dict) -> None:
    """Pair the handles of the learner's reply with the replay's, in order of appearance, for the
    requests that pass them on. Whether the replies agree is judged later (same_reply); a request
    naming an object the replay did not make ends the replay (_retarget)."""
    for a, b in zip(_refs(ex.reply), _refs(got[0])):
        handles.setdefault(a, b)


def _refs(obj) -> list:
    found = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if v.get("$") == "ref" and v.get("kind") == "handle" and type(v.get("id")) is int:
                found.append(v["id"])
            for x in v.values():
                walk(x)
    walk({k: obj.get(k) for k in ("ok", "mut", "lists")} if isinstance(obj, dict) else obj)
    return found


# ---------------------------------------------------------------- comparing replies
class _Pairing:
    """Identities seen on both sides (learner objects, tensor ids), paired by first appearance."""

    def __init__(self):
        self.forward, self.backward = {}, {}

    def same(self, a, b) -> bool:
        if self.forward.setdefault(a, b) != b:
            return False
        return self.backward.setdefault(b, a) == a


def _decode(reply: dict, blobs: list, field):
    decoder = wire.Decoder(blobs, ref=lambda r: r)

    def mark(t, fields):
        t._kata_oid = fields.get("oid") if type(fields.get("oid")) is int else None
        t._kata_alias = fields.get("alias") if type(fields.get("alias")) is int else None
    decoder.on_tensor = mark
    return decoder.decode(field)


def same_reply(learner, replay, request, pairing: _Pairing, random: bool = True) -> bool:
    """Does the replay's reply say what the learner's said, as a test would read it? random=False:
    random draws too must match value for value."""
    (a, a_blobs), (b, b_blobs) = learner, replay
    if ("error" in a) != ("error" in b):
        return False
    if "error" in a:
        ea, eb = a["error"] or {}, b["error"] or {}
        return all(ea.get(k) == eb.get(k) for k in ("base", "escape", "mistake"))
    random = random and _drew(a, a_blobs, request)
    try:
        if not _same(_decode(a, a_blobs, a.get("ok")), _decode(b, b_blobs, b.get("ok")), pairing, random):
            return False
        changed_a, changed_b = _mutations(a, a_blobs), _mutations(b, b_blobs)
        if changed_a.keys() != changed_b.keys():
            return False
        if not all(_same(value, changed_b[k], pairing, random) for k, value in changed_a.items()):
            return False
    except wire.WireError:
        return False
    sa, sb = a.get("state") or {}, b.get("state") or {}
    return (sa.get("grad") == sb.get("grad") and sa.get("dtype") == sb.get("dtype")
            and ("rng" in sa) == ("rng" in sb)  # the global generator moved, or not
            and (request.called_back or []) == (b.get("called_back") or [])
            and bool(a.get("shortcut")) == bool(b.get("shortcut"))
            and _moved_generators(a, a_blobs, request) == _moved_generators(b, b_blobs, request))


def _mutations(reply: dict, blobs: list) -> dict:
    """What the call changed in its arguments: tensor index -> (new value, new grad); list index -> items."""
    out = {}
    for entry in reply.get("mut") or []:
        if isinstance(entry, list) and len(entry) == 3:
            grad = entry[2].get("v") if isinstance(entry[2], dict) else None
            out[("t", entry[0])] = (_decode(reply, blobs, entry[1]), _decode(reply, blobs, grad),
                                    isinstance(entry[2], dict))
    for entry in reply.get("lists") or []:
        if isinstance(entry, list) and len(entry) == 2:
            out[("l", entry[0])] = _decode(reply, blobs, entry[1])
    return out


def _sent_generators(request: dict) -> dict:
    found = {}

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if v.get("$") == "gen" and "b" in v:
                found[v.get("k")] = v["b"]
            for x in v.values():
                walk(x)
    walk([request.get("args"), request.get("kwargs")])
    return found


def _moved_generators(reply: dict, blobs: list, request) -> frozenset:
    """The generators (by argument position) the call drew from; `request` is the Exchange."""
    sent, blobs_in = _sent_generators(request.header), request.blobs
    moved = set()
    for entry in reply.get("gens") or []:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] in sent:
            index = sent[entry[0]]
            before = blobs_in[index] if type(index) is int and index < len(blobs_in) else None
            after = blobs[entry[1]] if type(entry[1]) is int and entry[1] < len(blobs) else None
            if before != after:
                moved.add(entry[0])
    return frozenset(moved)


def _drew(reply: dict, blobs: list, request) -> bool:
    """Did the call draw random numbers: the global generator moved, or one it was given, or one a
    learner module keeps (the lecture's global g), or it read an object made by such a call?"""
    state = reply.get("state") or {}
    return "rng" in state or bool(state.get("hidden_rng")) or bool(_moved_generators(reply, blobs, request)) \
        or request.random_source


def _same(a, b, pairing: _Pairing, random: bool) -> bool:
    if isinstance(a, wire.Ref) or isinstance(b, wire.Ref):
        return isinstance(a, wire.Ref) and isinstance(b, wire.Ref) and a.kind == b.kind \
            and (a.kind != "handle" or pairing.same(("h", a.id), ("h", b.id)))
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return _same_tensor(a, b, pairing, random)
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=1e-12)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, pairing, random) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], pairing, random) for k in a)
    return a == b


def _same_tensor(a: torch.Tensor, b: torch.Tensor, pairing: _Pairing, random: bool) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.requires_grad != b.requires_grad:
        return False
    if getattr(a, "_kata_alias", None) != getattr(b, "_kata_alias", None):
        return False
    oa, ob = getattr(a, "_kata_oid", None), getattr(b, "_kata_oid", None)
    if (oa is None) != (ob is None) or (oa is not None and not pairing.same(("o", oa), ("o", ob))):
        return False
    if (a.grad is None) != (b.grad is None) or (a.grad is not None and not _same_tensor(a.grad, b.grad, pairing, random)):
        return False
    a, b = a.detach(), b.detach()
    if not a.is_floating_point():
        return torch.equal(a, b)
    rtol, atol = TOLERANCE.get(a.dtype, (1e-7, 1e-9))
    if torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
        return True
    return random and _same_draw(a.double().flatten(), b.double().flatten())


def _same_draw(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two random draws from one distribution, by the statistics tests of draws use (SIGMAS)."""
    n = a.numel()
    if n < MIN_DRAWS or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    sa, sb = a.std().item(), b.std().item()
    sigma = max(sa, sb)
    if sigma == 0:
        return a.mean().item() == b.mean().item()
    return abs(a.mean().item() - b.mean().item()) <= SIGMAS * sigma * math.sqrt(2 / n) \
        and abs(sa - sb) <= SIGMAS * sigma * math.sqrt(1 / n) and _ks(a, b) <= KS_C * math.sqrt(2 / n)


KS_C = 1.95  # two-sample Kolmogorov-Smirnov: D > 1.95 sqrt(2/n) has probability 0.001 for one distribution


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest gap between the two samples' empirical distribution functions (the shape of the
    draw: a uniform draw with the right std is not a normal one)."""
    both = torch.cat([a, b]).sort().values
    fa = torch.searchsorted(a.sort().values, both, right=True).double() / a.numel()
    fb = torch.searchsorted(b.sort().values, both, right=True).double() / b.numel()
    return (fa - fb).abs().max().item()


# how a replay matches the learner's replies: not at all; random draws alike by their statistics;
# value for value within the dtype's tolerance; byte for byte (the same arithmetic: what a mistake
# graded as itself gives, and what tells a float32 slip from float64 arithmetic done right)
NO, DRAWN_ALIKE, EXACT, IDENTICAL = 0, 1, 2, 3


def _mark_random_sources(tape: list) -> None:
    """Each exchange that reads or calls an object made by a call that drew random numbers reads a
    random value too (a Linear's weight, drawn when it was made)."""
    random_handles: set = set()
    for ex in tape:
        target = ex.header.get("target") or {}
        ex.random_source = target.get("handle") in random_handles
        if _drew(ex.reply, ex.reply_blobs, ex):
            random_handles.update(_refs(ex.reply))


def _same_tape(tape: list, replies: list | None) -> int:
    if replies is None or len(replies) != len(tape):
        return NO
    _mark_random_sources(tape)
    if _identical(tape, replies):
        return IDENTICAL
    pairing = _Pairing()
    exact = all(same_reply((ex.reply, ex.reply_blobs), got, ex, pairing, random=False) for ex, got in zip(tape, replies))
    if exact:
        return EXACT
    pairing = _Pairing()
    alike = all(same_reply((ex.reply, ex.reply_blobs), got, ex, pairing) for ex, got in zip(tape, replies))
    repeats = _repeats([(ex.reply, ex.reply_blobs) for ex in tape]) == _repeats(replies)
    return DRAWN_ALIKE if alike and repeats else NO


def _identical(tape: list, replies: list) -> bool:
    """The same replies byte for byte, object numbers canonical (a learner object's repr, which
    holds its address, aside)."""
    mine = _canonical([(ex.reply, ex.reply_blobs) for ex in tape])
    theirs = _canonical(replies)
    return all(json.dumps(_plain(a), sort_keys=True) == json.dumps(_plain(b), sort_keys=True)  # 1 is not 1.0
               and [bytes(x) for x in ab] == [bytes(x) for x in bb]
               and (ex.called_back or []) == (b.get("called_back") or [])
               for ex, (a, ab), (b, bb) in zip(tape, mine, theirs))


def _plain(header):
    if isinstance(header, dict):
        return {k: _plain(v) for k, v in header.items() if k not in ("info", "blobs", "called_back")}
    if isinstance(header, list):
        return [_plain(v) for v in header]
    return header


def _repeats(replies: list) -> list:
    """Which replies repeat an earlier one byte for byte: the relation between draws that a test of
    seeding reads (the same seed twice, the same weights; another seed, others), which statistics of
    each draw alone cannot see."""
    seen, out = {}, []
    for header, blobs in replies:
        digest = hashlib.sha256(b"".join(blobs)).hexdigest() if blobs else None
        out.append(seen.setdefault(digest, len(seen)) if digest else None)
    return out


# ---------------------------------------------------------------- the cache
MISSING = object()


class Cache:
    """What replays gave, in memory for this process and in .kata/diagnosis/cache.sqlite for later
    grades (one file; sqlite serialises the writers of a class's parallel grades):
    - verdicts: a test's matches, keyed by its requests AND the learner's replies, so grading the
      same code again replays and compares nothing;
    - tapes and replies: each implementation's replies to canonical requests, every reply stored
      once by content with its object numbers canonical (most mistakes answer most requests
      exactly as the reference does)."""

    def __init__(self):
        self.memory: dict[str, object] = {}
        self._salt = None
        self._db = None

    def salt(self) -> str:
        if self._salt is None:
            from kata.report import content_hash
            self._salt = f"{content_hash()}|{torch.__version__}"
        return self._salt

    def db(self):
        if self._db is None:
            import sqlite3
            try:
                root = _cache_root()
                if root is None:
                    raise sqlite3.OperationalError("no writable .kata/")
                self._db = sqlite3.connect(root / "cache.sqlite", timeout=30, isolation_level=None)
                # a cache needs no durability: no fsync per write (it cost minutes in the catalog check)
                self._db.executescript(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                    "CREATE TABLE IF NOT EXISTS verdict (key TEXT PRIMARY KEY, found TEXT);"
                    "CREATE TABLE IF NOT EXISTS tape (key TEXT PRIMARY KEY, digests TEXT);"
                    "CREATE TABLE IF NOT EXISTS reply (digest TEXT PRIMARY KEY, frame BLOB);")
            except sqlite3.Error:  # a cache that cannot be opened costs time, never a verdict
                self._db = False
        return self._db

    def _read(self, sql: str, key: str):
        import sqlite3
        try:
            row = self.db().execute(sql, (key,)).fetchone() if self.db() else None
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def _write(self, sql: str, rows: list) -> None:
        import sqlite3
        if self.db():
            try:
                self.db().executemany(sql, rows)
            except sqlite3.Error:
                pass

    def key(self, who: str, tape: list, replies: bool = False) -> str:
        """The requests with the learner's object ids numbered in order of appearance (they differ
        from run to run) and no implementation path: the same test of the same code, the same key.
        replies=True: the learner's replies too, with their object numbers canonical."""
        h = hashlib.sha256(f"{self.salt()}|{who}|{replies}".encode())
        handles: dict = {}
        for ex in tape:
            h.update(json.dumps(_retarget(ex.header, "IMPL", handles), sort_keys=True).encode())
            for blob in [*ex.blobs, ex.rng]:
                h.update(hashlib.sha256(blob).digest())
            for i in _refs(ex.reply or {}):  # which objects later requests can name: part of the key
                h.update(str(handles.setdefault(i, len(handles))).encode())
            h.update(b"|")
        if replies:
            for ex, (header, blobs) in zip(tape, _canonical([(ex.reply, ex.reply_blobs) for ex in tape])):
                h.update(json.dumps([header, ex.called_back], sort_keys=True).encode())
                for blob in blobs:
                    h.update(hashlib.sha256(blob).digest())
        return h.hexdigest()

    def verdict(self, key: str):
        if key not in self.memory:
            found = self._read("SELECT found FROM verdict WHERE key = ?", key)
            if found is None:
                return MISSING
            self.memory[key] = json.loads(found)
        return self.memory[key]

    def put_verdict(self, key: str, found: list) -> None:
        self.memory[key] = found
        self._write("INSERT OR REPLACE INTO verdict VALUES (?, ?)", [(key, json.dumps(found))])

    def get(self, key: str):
        """The cached replies (None: the replay could not go on), or MISSING."""
        if key in self.memory:
            return self.memory[key]
        digests = self._read("SELECT digests FROM tape WHERE key = ?", key)
        if digests is None:
            return MISSING
        try:
            digests = json.loads(digests)
            replies = None if digests is None else \
                [_unpack(self._read("SELECT frame FROM reply WHERE digest = ?", d))[0] for d in digests]
        except (wire.WireError, ValueError, KeyError, TypeError, IndexError):
            return MISSING
        self.memory[key] = replies
        return replies

    def put(self, key: str, replies: list | None) -> None:
        replies = None if replies is None else _canonical(replies)
        self.memory[key] = replies
        frames = [] if replies is None else [_pack([reply]) for reply in replies]
        digests = [hashlib.sha256(frame).hexdigest() for frame in frames]
        self._write("INSERT OR IGNORE INTO reply VALUES (?, ?)", list(zip(digests, frames)))
        self._write("INSERT OR REPLACE INTO tape VALUES (?, ?)", [(key, json.dumps(None if replies is None else digests))])


def _canonical(replies: list) -> list:
    """The replies with learner object ids and tensor numbers renumbered in order of appearance
    across the tape: the same answers, the same bytes, whichever process gave them."""
    numbers: dict = {}

    def walk(v):
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            out = {k: walk(x) for k, x in v.items()}
            if v.get("$") == "ref" and v.get("kind") == "handle" and type(v.get("id")) is int:
                out["id"] = numbers.setdefault(("h", v["id"]), len(numbers))
            if v.get("$") == "tensor" and type(v.get("oid")) is int:
                out["oid"] = numbers.setdefault(("o", v["oid"]), len(numbers))
            return out
        return v
    return [({k: walk(v) for k, v in header.items() if k != "blobs"}, blobs) for header, blobs in replies]


def _pack(replies: list | None) -> bytes:
    if replies is None:
        return wire.pack({"none": True}, [])
    return b"".join(wire.pack({**header, "blobs": [len(b) for b in blobs]}, blobs) for header, blobs in replies)


def _unpack(data: bytes) -> list | None:
    out, at, prefix = [], 0, wire._PREFIX
    while at < len(data):
        total, head = prefix.unpack_from(data, at)
        body = data[at + prefix.size: at + prefix.size + total]
        if len(body) != total:
            raise wire.WireError("a truncated cache file")
        header = json.loads(body[:head])
        if header.get("none"):
            return None
        blobs, pos = [], wire._padded(head)
        for n in header.pop("blobs"):
            blobs.append(bytes(body[pos:pos + n]))
            pos += wire._padded(n)
        out.append((header, blobs))
        at += prefix.size + total
    return out


# ---------------------------------------------------------------- the diagnosis of one test
_replayer: Replayer | None = None
_cache = Cache()


def _replies(who: str, folder_of, tape: list) -> list | None:
    """The replies of `who` (the reference, or a mistake) to the tape's requests: cached, else replayed."""
    global _replayer
    key = _cache.key(who, tape)
    replies = _cache.get(key)
    if replies is MISSING:
        if _replayer is None:
            _replayer = Replayer()
        replies = _replayer.replay(folder_of(), tape, who)
        for header, _ in replies or ():
            header.pop("blobs", None)
        _cache.put(key, replies)
    return replies


def matches(topic: str, tape: list) -> list[str]:
    """The mistakes (qualified ids) whose replay of this test's requests gives the learner's
    replies, when the reference's replay does not. [] when nothing catalogued reproduces it."""
    tape = [ex for ex in tape if ex.reply is not None]
    if not tape:
        return []
    key = _cache.key(topic, tape, replies=True)
    found = _cache.verdict(key)
    if found is MISSING:
        found = _matches(topic, tape)
        _cache.put_verdict(key, found)
    return list(found)


def _matches(topic: str, tape: list) -> list[str]:
    from kata.loader import BUILTIN
    reference = _same_tape(tape, _replies("reference", lambda: BUILTIN["solutions"], tape))
    if reference == IDENTICAL:
        return []  # the learner answered as the reference does: what failed is not in these values
    found = {c.id: _same_tape(tape, _replies(c.id, c.folder, tape)) for c in candidates(topic)}
    best = max(found.values(), default=NO)
    # the closest reproduction wins (byte for byte, then within tolerance, then draws alike), and
    # only when it is closer than the reference's: replies as near the reference's as a mistake's
    # are not that mistake's doing
    if best <= reference:
        return []
    closest = [m for m, how in found.items() if how == best]
    singles = [m for m in closest if m not in _parts(topic)]
    return singles or closest  # a pair is named only where no single mistake does it alone


def refine(topic: str, records: list, passing: list) -> None:
    """Where several mistakes explain a failing test, drop those that a test the learner's code
    passes contradicts: its replay of that test differs from the learner's replies (who passed it,
    as the reference does). Only ever narrows a "one of"; never removes its last mistake."""
    ambiguous = {m for r in records if r.matches and len(r.matches) > 1 for m in r.matches}
    if not ambiguous or not passing:
        return
    by_id = {c.id: c for c in candidates(topic)}
    refuted = {m for m in ambiguous if m in by_id and any(
        _same_tape(tape, _replies(m, by_id[m].folder, tape)) == NO for tape in passing if tape)}
    for r in records:
        if r.matches and len(r.matches) > 1:
            r.matches = [m for m in r.matches if m not in refuted] or r.matches


def mistake(topic: str, qualified: str) -> topics.Mistake | None:
    """The catalog entry a (qualified) id names, from the topic or a topic it uses."""
    owner, _, plain = qualified.rpartition("/")
    return next((m for m in _catalog(owner or topic) if m.id == plain), None)


@functools.lru_cache(maxsize=None)
def _catalog(topic: str) -> tuple:
    """The topic's single mistakes, then its combinations (each its own patch)."""
    return tuple(topics.catalogue(topic))


def title(topic: str, qualified: str) -> str:
    found = mistake(topic, qualified)
    return found.title if found else qualified


def stop() -> None:
    global _replayer
    if _replayer is not None:
        _replayer.stop()
        _replayer = None


# ---------------------------------------------------------------- the causes of a topic's failures
def causes(records: list, topic: str) -> list:
    """The fewest causes that explain a topic's failing tests, most tests first.

    Mistakes that explain exactly the same tests are one cause ("one of"). A mistake is chosen by
    the failing tests it explains that no chosen cause explains yet, so where two match one test
    the tests only one of them explains decide, and a mistake whose tests another already explains
    is not named. Combinations (catalog entries that make two mistakes at once) are tried only for
    the tests no single mistake explains; a combination explains too what either of its parts
    explains alone (a test where one of the two makes no difference), and is named as its two
    mistakes, each once."""
    from kata.results import Cause
    explained: dict[str, set] = {}
    for r in records:
        if not r.passed:
            for m in r.matches or ():
                explained.setdefault(m, set()).add(r.name)
    if not explained:
        return []  # nothing matched (a pass, a stub): the catalog is not even read
    parts = _parts(topic)
    singles = [m for m in explained if m not in parts]
    chosen, uncovered = _greedy(singles, explained, set().union(*explained.values()) if explained else set(), topic,
                                [r.name for r in records])
    combos = {c: explained[c].union(*(explained.get(p, set()) for p in parts[c])) for c in explained if c in parts}
    while uncovered:
        best = max(combos, key=lambda c: (len(explained[c] & uncovered), len(combos[c])), default=None)
        if best is None or not explained[best] & uncovered:
            break
        chosen = [c for c in chosen if not set(c.tests) <= combos[best]]
        # one cause per mistake of the pair, each with what it explains alone and what only the
        # pair explains: the learner reads each mistake once, in its own words
        for part in parts[best]:
            mine = explained.get(part, set()) | explained[best]
            chosen.append(Cause([part], [r.name for r in records if r.name in mine]))
        uncovered -= combos.pop(best)
    return sorted(chosen, key=lambda c: -len(c.tests))


def _greedy(pool: list, explained: dict, uncovered: set, topic: str, names: list) -> tuple[list, set]:
    """Singles chosen by the failing tests they explain that no chosen one does; `names`: the tests
    in run (lesson) order, the order a cause lists its tests in."""
    from kata.results import Cause
    order = {m: k for k, m in enumerate(c.id for c in candidates(topic))}
    chosen = []
    while uncovered:
        best = max(pool, key=lambda m: (len(explained[m] & uncovered), len(explained[m])), default=None)
        if best is None or not explained[best] & uncovered:
            break
        alike = sorted((m for m in pool if explained[m] == explained[best]), key=lambda m: order.get(m, len(order)))
        chosen.append(Cause(alike, [r for r in names if r in explained[best]]))
        uncovered = uncovered - explained[best]
        pool = [m for m in pool if m not in alike]
    return chosen, uncovered


def _parts(topic: str) -> dict:
    """{combination's qualified id: the qualified ids of its parts}, for the topic and those it uses."""
    out = {}
    for t in (topic, *topics.get(topic).uses):
        prefix = "" if t == topic else f"{t}/"
        out.update({prefix + m.id: [prefix + p for p in m.combines] for m in _catalog(t) if m.combines})
    return out


def _trusted_process():
    from kata import learner
    from kata.remote import LearnerProcess

    class Trusted(LearnerProcess):
        def start(self) -> None:
            child_in, parent_out = os.pipe()
            parent_in, child_out = os.pipe()
            import tempfile
            self.log = tempfile.TemporaryFile()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        signal.signal(sig, signal.SIG_DFL)
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                    _close_all_but({0, 1, 2, child_in, child_out})
                    learner.Server(wire.Channel(child_in, child_out)).serve()
                finally:
                    os._exit(0)
            os.close(child_in)
            os.close(child_out)
            self.pid, self.popen = pid, None
            self.channel = wire.Channel(parent_in, parent_out)
            self.generation += 1
            self.rng = None

    return Trusted()


def _close_all_but(keep: set) -> None:
    """The replay process keeps only its own pipe: not the learner process's, nor pytest's files."""
    fds = [int(fd) for fd in os.listdir("/proc/self/fd")] if os.path.isdir("/proc/self/fd") else range(3, 256)
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
