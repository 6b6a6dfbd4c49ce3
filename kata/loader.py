"""Load the implementation under test: `exercises` (default), `solutions`, or a folder path.

The chosen folder is loaded as a package under a fresh private name, so its modules may import
each other relatively (`from .modules import Linear`). Every load compiles from the source text:
an edit is seen without restarting a long-lived process (grader --watch), and no `__pycache__`
is ever written into the learner's folder.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the reference: solutions/ in a clone; kata/solutions/ in an installed wheel (diagnosis needs it)
BUILTIN = {"exercises": ROOT / "exercises",
           "solutions": next((p for p in (ROOT / "solutions", Path(__file__).resolve().parent / "solutions")
                              if p.is_dir()), ROOT / "solutions")}
# the topic tests: tests/ in a clone of the repository; kata/tests/ in an installed wheel
TESTS = next((p for p in (ROOT / "tests", Path(__file__).resolve().parent / "tests") if p.is_dir()), ROOT / "tests")
_PREFIX = "_kata_impl"
_counter = itertools.count()


class ImplNotFound(ValueError):
    """KATA_IMPL / --impl names neither a built-in tree nor an existing folder."""


class LearnerImportError(ImportError):
    """The learner's module could not be imported; the message says where and why."""


def default_impl() -> str:
    """The implementation to test when none is named: $KATA_IMPL, else exercises."""
    return os.environ.get("KATA_IMPL") or "exercises"


def resolve(impl: str | os.PathLike | None = None) -> Path:
    """The folder to test: `impl`, else $KATA_IMPL, else exercises/."""
    name = str(impl) if impl else default_impl()
    path = BUILTIN.get(name, Path(name).expanduser())
    if not path.is_dir():
        raise ImplNotFound(
            f"implementation {name!r} not found: use 'exercises', 'solutions' or a path to a folder "
            "that holds the topic files (batchnorm.py, ...)"
        )
    return path.resolve()


def show_path(path) -> str:
    """A path as the learner typed it: relative to the current folder when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def chosen(impl_options=None) -> list[str]:
    """The implementations a pytest run tests: its --impl values, else $KATA_IMPL, else exercises."""
    return list(impl_options or [default_impl()])


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compile from the .py text every time: no stale bytecode, no writes beside learner files."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return compile(self.get_data(path), path, "exec", dont_inherit=True)


class _ImplFinder(importlib.abc.MetaPathFinder):
    """Finds `<private package>.<module>` in that package's folder, with the loader above."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, module = fullname.rpartition(".")
        if not package.startswith(_PREFIX) or "." in package or package not in sys.modules:
            return None
        file = Path(sys.modules[package].__path__[0]) / f"{module}.py"
        if not file.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, file, loader=_SourceOnlyLoader(fullname, str(file)))


_FINDER = _ImplFinder()


class Implementation:
    """One implementation folder, loaded fresh: `Implementation('solutions').load('batchnorm')`."""

    def __init__(self, impl: str | os.PathLike | None = None):
        self.path = resolve(impl)
        self.label = str(impl or default_impl())
        self.package = f"{_PREFIX}{next(_counter)}"
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        pkg = types.ModuleType(self.package)
        pkg.__path__ = [str(self.path)]
        pkg.__package__ = self.package
        sys.modules[self.package] = pkg

    def file(self, topic: str) -> Path:
        return self.path / f"{topic}.py"

    def load(self, topic: str) -> types.ModuleType:
        """Import `<impl>/<topic>.py`. Anything the learner's module does wrong while importing
        (a syntax error, an exception, sys.exit, pytest.skip, KeyboardInterrupt) becomes one
        LearnerImportError that names the file and line."""
        file = self.file(topic)
        if not file.is_file():
            raise LearnerImportError(f"{file} does not exist: the {topic} topic needs this file")
        try:
            return importlib.import_module(f"{self.package}.{topic}")
        except SyntaxError as e:
            raise LearnerImportError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}") from None
        except BaseException as e:  # noqa: BLE001 - learner code is untrusted: exits and skips included
            where = _learner_frame(e, file)
            raise LearnerImportError(
                f"importing {file}{where} raised {type(e).__name__}: {e}"
            ) from (e if isinstance(e, Exception) else None)


def _learner_frame(exc: BaseException, file: Path) -> str:
    """':LINE' of the deepest traceback frame in the learner's file, or ''."""
    line, tb = "", exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == file:
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line
