"""What the grading side cannot verify, flagged for an instructor: a scan of the learner's source.

Return values are checked in the grading process and stay the verdict. Some rules are observed
only inside the learner process (no shortcut, inputs left unchanged, grad mode restored): code
that reaches into torch's or the kata's internals can rewrite what that process reports, so such
code is not trusted but flagged, with its line, as "needs review" (in the scorecard, the report
and results.json; hidden from students on Gradescope).

The source is decoded as Python decodes it (a PEP 263 coding line, a BOM), never as UTF-8 only:
a file the scan cannot read would otherwise be a file the scan skips.

    review.flags(source_text) -> [{"line": 7, "why": "reaches torch._C, torch's internals"}, ...]
"""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

# modules whose use in a topic file has no place in the lesson, and what each can reach
MODULES = {
    "importlib": "imports modules by a computed name (importlib)",
    "ctypes": "calls C code directly (ctypes)",
    "cffi": "calls C code directly (cffi)",
    "gc": "walks the interpreter's objects (gc)",
    "inspect": "reads frames and closures (inspect)",
    "signal": "handles or sends signals (signal)",
    "faulthandler": "changes the interpreter's crash handling (faulthandler)",
    "builtins": "rebinds Python's builtins (builtins)",
    "subprocess": "starts processes (subprocess)",
    "multiprocessing": "starts processes (multiprocessing)",
    "threading": "starts threads (threading)",
    "mmap": "maps memory (mmap)",
    "kata": "reaches the kata's own modules",
    "solutions": "imports the reference",
}
# attributes that lead from an object to another's internals
ATTRIBUTES = {
    "__closure__": "reads a function's closure (__closure__)",
    "__globals__": "reads a function's globals (__globals__)",
    "__code__": "reads or replaces a function's code (__code__)",
    "__defaults__": "rebinds a function's defaults (__defaults__)",
    "__kwdefaults__": "rebinds a function's defaults (__kwdefaults__)",
    "__subclasses__": "walks the class hierarchy (__subclasses__)",
    "__builtins__": "reaches Python's builtins (__builtins__)",
    "__wrapped__": "unwraps a wrapped function (__wrapped__)",
    "f_globals": "reads a frame's globals", "f_locals": "reads a frame's locals", "f_back": "walks the call stack",
    "tb_frame": "walks the call stack", "gi_frame": "walks the call stack", "cr_frame": "walks the call stack",
    "get_objects": "walks the interpreter's objects (gc.get_objects)",
    "get_referents": "walks the interpreter's objects (gc.get_referents)",
    "get_referrers": "walks the interpreter's objects (gc.get_referrers)",
    "_getframe": "walks the call stack (sys._getframe)",
    "modules": None,      # sys.modules only: see _attribute
    "settrace": "installs a trace function (sys.settrace)",
    "setprofile": "installs a profile function (sys.setprofile)",
    "kill": "sends signals (os.kill)", "killpg": "sends signals (os.killpg)",
    "ops": None,          # torch.ops only
}
CALLS = {
    "exec": "runs code from a string (exec)",
    "eval": "runs code from a string (eval)",
    "compile": "compiles code from a string (compile)",
    "__import__": "imports modules by a computed name (__import__)",
    "globals": "reads the module's globals (globals())",
    "breakpoint": "starts a debugger (breakpoint)",
}
COMPUTED = ("getattr", "setattr", "delattr", "hasattr")


def read_source(path: Path) -> str:
    """The file's text as Python reads it: its PEP 263 coding line, or a BOM, else UTF-8. Raises
    SyntaxError, UnicodeDecodeError or LookupError (an unknown codec) as the import would fail."""
    return importlib.util.decode_source(Path(path).read_bytes())


def flags(source: str) -> list[dict]:
    """[{"line", "why"}] for each place in `source` that reaches torch's or the kata's internals;
    [] for a file that does not parse (a syntax error never passes anyway)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: dict[tuple, None] = {}
    for node in ast.walk(tree):
        for why in _reasons(node):
            found[(getattr(node, "lineno", 0), why)] = None
    return [{"line": line, "why": why} for line, why in sorted(found)]


def _reasons(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [MODULES[m] for m in (a.name.split(".")[0] for a in node.names) if m in MODULES]
    if isinstance(node, ast.ImportFrom):
        top = (node.module or "").split(".")[0]
        out = [MODULES[top]] if not node.level and top in MODULES else []
        if top == "torch" and (node.module.startswith("torch._") or node.module.startswith("torch.ops")
                               or any(a.name.startswith("_") or a.name == "ops" for a in node.names)):
            out.append(f"reaches torch's internals (from {node.module} import ...)")
        return out
    if isinstance(node, ast.Attribute):
        return _attribute(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in CALLS:
            return [CALLS[node.func.id]]
        if node.func.id in COMPUTED and len(node.args) >= 2 and not _constant_str(node.args[1]):
            return [f"{node.func.id} with a computed name"]
    if isinstance(node, ast.Name) and node.id in ("__builtins__", "__loader__", "__spec__"):
        return [f"reaches {node.id}"]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        if re.search(r"(^|[^\w.])/proc(/|$)", text):
            return ["reads /proc"]
        if text == "kata" or text.startswith("kata.") or "_kata" in text:
            return ["names the kata's internals"]
    return []


def _attribute(node: ast.Attribute) -> list[str]:
    name = node.attr
    base = _dotted(node.value)
    if name == "_C" or base.startswith("torch._C"):
        return ["reaches torch._C, torch's internals"]
    if name == "ops" and base == "torch":
        return ["reaches torch.ops, torch's operator registry"]
    if name == "modules" and base == "sys":
        return ["reaches loaded modules by name (sys.modules)"]
    if base == "torch" and name.startswith("_") and not name.endswith("__"):  # torch.__version__ is public
        return [f"reaches torch's internals (torch.{name})"]
    if name.startswith("_kata"):
        return ["reaches the kata's internals"]
    why = ATTRIBUTES.get(name)
    if why is None:
        return []
    if name in ("kill", "killpg") and base != "os":
        return []
    return [why]


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _constant_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
