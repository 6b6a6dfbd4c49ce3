"""The sandbox learner code runs in, where the machine allows one (bubblewrap, Linux).

A zygote is started inside `bwrap` as early as possible (while pytest collects): it imports torch
and the kata's learner-side modules once, then forks one learner process per request of the test
process (a topic run, a restart after a timeout). The test process talks to it over a Unix socket
passed into bwrap; each learner process gets its two message pipes and its log file through that
socket (SCM_RIGHTS), so nothing else of the grading process crosses.

Inside the sandbox:
- its own PID namespace (`--unshare-pid`, `--die-with-parent`): every process learner code starts
  dies with the zygote, at the latest when the test process exits;
- no network, IPC or UTS namespace of the host;
- a read-only filesystem that holds only the interpreter, its libraries and site-packages, the
  kata's package (never the reference, solutions/), and the implementation folders being graded
  (copied into a staging folder: the learner's files, nothing beside them), plus a private /tmp;
- its own /proc (the grading process is not in it), a minimal environment, no inherited fds;
- per learner process: RLIMIT_AS, RLIMIT_FSIZE (its log and files), RLIMIT_NPROC, no core files,
  and, when the run is root, a uid of its own, switched to after every import.

`python -m kata.sandbox zygote FD` is the zygote's entry point (started by `Zygote`).
Where bwrap is missing or cannot start (no user namespaces, as in Docker/Gradescope), or
KATA_SANDBOX=0, `available()` is False and kata/remote.py forks learner processes as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KATA = Path(__file__).resolve().parent          # the kata's package: the only part of the clone inside
ROOT = KATA.parent                              # holds solutions/, which stays outside
SANDBOX_UID = 64999  # the uid learner code runs as in the sandbox when the run is root: a uid of its own,
# so RLIMIT_NPROC counts only learner processes
PROCESSES = 64       # RLIMIT_NPROC above what the uid already runs: a fork bomb fails itself
TMP_SIZE = 64 << 20  # the private /tmp (a tmpfs)
START_TIMEOUT = 60.0  # seconds the zygote may take to import torch on a loaded machine


class SandboxError(RuntimeError):
    """The sandbox started, but the kata could not run inside it: a grader failure."""


# ---------------------------------------------------------------- can a sandbox start here?
_usable: bool | None = None


def wanted() -> bool:
    return os.environ.get("KATA_SANDBOX", "1") != "0" and sys.platform.startswith("linux")


def available() -> bool:
    """Can bwrap start a sandbox on this machine (checked once, about 10 ms)?"""
    global _usable
    if _usable is None:
        _usable = False
        if wanted() and shutil.which("bwrap"):
            try:
                done = subprocess.run([*_namespaces(), "--ro-bind", "/", "/", "true"], capture_output=True,
                                      timeout=10, stdin=subprocess.DEVNULL)
                _usable = done.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _usable = False
    return _usable and wanted()


def _namespaces() -> list[str]:
    args = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # no user namespace: real root, with only what the zygote needs to switch and stop
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
    else:
        args += ["--unshare-user"]
    return args


# ---------------------------------------------------------------- what is visible inside
def _system_paths() -> list[Path]:
    """The interpreter, its standard library and every site-packages folder on sys.path, but
    nothing that holds the kata's clone (solutions/ would be inside)."""
    paths = set()
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              Path(sys.executable).parent, Path(sys.executable).resolve().parent):
        paths.add(Path(p))
    for entry in sys.path:
        if entry and Path(entry).is_dir():
            paths.add(Path(entry))
    keep = []
    for p in sorted({q.resolve() for q in paths} | paths, key=lambda q: len(q.parts)):
        if not p.exists() or _holds_reference(p) or str(p) == "/":
            continue
        if any(p.is_relative_to(k) and p.resolve().is_relative_to(k) for k in keep):
            continue
        keep.append(p)
    return keep


def _references() -> list[Path]:
    """Where the reference may lie: solutions/ of a clone, kata/solutions/ of an installed wheel."""
    from kata.loader import BUILTIN
    return sorted(p for p in {(KATA / "solutions").resolve(), BUILTIN["solutions"].resolve()} if p.is_dir())


def _holds_reference(p: Path) -> bool:
    """Would binding `p` show the reference (solutions/ of a clone)? A venv inside the clone would not."""
    reference = ROOT / "solutions"
    p = p.resolve()
    return reference.exists() and (reference.is_relative_to(p) or p.is_relative_to(reference))


def bwrap_command(stage: Path, control_fd: int) -> list[str]:
    args = _namespaces()
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
    bound, made = [Path("/usr")], {Path("/"), Path("/tmp")}
    for p in [*_system_paths(), KATA, stage]:  # after /tmp: a venv under /tmp is bound over the private tmpfs
        if any(p.is_relative_to(b) for b in bound):
            continue
        args += _parents(p, bound, made) + ["--ro-bind", str(p), str(p)]
        bound.append(p)
    for reference in _references():  # an installed wheel keeps the reference in kata/solutions: hidden
        if any(reference.is_relative_to(b) for b in bound):
            args += ["--tmpfs", str(reference)]
    args += ["--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "KATA_STAGE": str(stage), "KATA_NPROC": str(_nproc_limit())}
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args + [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                   "from kata import sandbox; sandbox.zygote_main(int(sys.argv[2]))", str(ROOT), str(control_fd)]


def _parents(p: Path, bound: list, made: set) -> list[str]:
    """The folders above a bind, created world-readable (bwrap makes them 0700, which would shut
    out the learner's uid), except those that exist already in the sandbox."""
    args = []
    for parent in reversed(p.parents):
        if parent in made or any(parent.is_relative_to(b) for b in bound):
            continue
        args += ["--perms", "0755", "--dir", str(parent)]
        made.add(parent)
    return args


def _nproc_limit() -> int:
    """RLIMIT_NPROC counts every process of the uid on the machine: as root the learner gets a uid of
    its own; otherwise the limit is what the user already runs plus PROCESSES."""
    if os.geteuid() == 0:
        return PROCESSES
    mine = 0
    for entry in os.listdir("/proc"):
        try:
            mine += entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == os.getuid()
        except OSError:
            pass
    return mine + PROCESSES


# ---------------------------------------------------------------- staging implementation folders
def stage_key(impl: str) -> str:
    return hashlib.sha256(impl.encode()).hexdigest()[:16]


def stage_impl(stage: Path, impl: str) -> None:
    """Copy the learner's .py files of `impl` (a folder) into the staging folder, afresh: the sandbox
    sees the files as they are now, and nothing else of the folder (or of the folders above it)."""
    target = stage / stage_key(impl)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o755)
    source = Path(impl)
    for f in source.glob("*.py") if source.is_dir() else ():
        if f.is_file():
            shutil.copyfile(f, target / f.name)
            (target / f.name).chmod(0o644)


def stage_file(stage: Path, path: str, name: str) -> str:
    target = stage / name
    shutil.copyfile(path, target)
    target.chmod(0o644)
    return str(target)


# ---------------------------------------------------------------- the test side
class Zygote:
    """The test process's handle on the zygote: start, spawn a learner process, stop one."""

    def __init__(self):
        self.stage = Path(tempfile.mkdtemp(prefix="kata-stage-"))
        self.stage.chmod(0o755)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(bwrap_command(self.stage, theirs.fileno()), pass_fds=(theirs.fileno(),),
                                      stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        theirs.close()
        self.ready = False

    def _ask(self, request: dict, fds=(), timeout: float = 30.0) -> dict:
        if not self.ready:
            self._wait_ready()
        self.sock.settimeout(timeout)
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], list(fds))
            data = self.sock.recv(65536)
        except (OSError, socket.timeout) as e:
            raise SandboxError(f"the sandbox's zygote stopped answering ({e}){self._tail()}") from None
        if not data:
            raise SandboxError(f"the sandbox's zygote ended{self._tail()}")
        reply = json.loads(data)
        if "error" in reply:
            raise SandboxError(reply["error"])
        return reply

    def _wait_ready(self) -> None:
        self.sock.settimeout(START_TIMEOUT)
        try:
            data = self.sock.recv(65536)
        except (OSError, socket.timeout):
            data = b""
        if data != b'{"ready": true}':
            raise SandboxError(f"the sandbox started but the kata could not run in it{self._tail()}")
        self.ready = True

    def _tail(self) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            self.log.seek(max(0, self.log.tell() - 2000))
            text = self.log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return f": {text}" if text else ""

    def spawn(self, fd_in: int, fd_out: int, log_fd: int, bundle: str | None) -> int:
        """A new learner process serving the two pipes; its pid inside the sandbox."""
        return self._ask({"op": "spawn", "bundle": bundle}, fds=(fd_in, fd_out, log_fd))["pid"]

    def signal(self, pid: int, sig: int) -> None:
        """Send a signal to a learner process (SIGUSR1: it dumps its stack to its log)."""
        self._ask({"op": "signal", "pid": pid, "sig": int(sig)})

    def stop(self, pid: int) -> int | None:
        """SIGKILL to the learner process and everything it started; its exit status as a shell shows it."""
        return self._ask({"op": "stop", "pid": pid}).get("status")

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
            self.popen.wait()
            self.log.close()
            shutil.rmtree(self.stage, ignore_errors=True)


_early: Zygote | None = None


def prestart() -> None:
    """Start the zygote now, before this process imports torch: the two imports then run side by
    side (grader.py and run_autograder call this first). kata.remote takes it over."""
    global _early
    if _early is None and available():
        _early = Zygote()


def take_early() -> Zygote | None:
    global _early
    zygote, _early = _early, None
    return zygote


# ---------------------------------------------------------------- inside the sandbox
def zygote_main(control_fd: int) -> None:
    """The zygote: import everything a learner process needs, then fork one per request."""
    sock = socket.socket(fileno=control_fd)
    try:
        _no_dumps()
        import torch  # noqa: F401 - imported once, here, for every learner process
        from kata import learner, loader, probes, topics, wire  # noqa: F401 - the learner side, whole
        try:
            import cloudpickle  # noqa: F401 - notebook bundles
        except ImportError:
            pass
        learner.warm()
    except BaseException as e:  # noqa: BLE001 - the test process reports it as a grader failure
        import traceback
        traceback.print_exc()
        sock.send(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        os._exit(70)
    sock.send(b'{"ready": true}')
    children: set[int] = set()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 8)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        request = json.loads(data)
        try:
            if request["op"] == "spawn":
                pid = _fork_learner(sock, fds, request.get("bundle"))
                children.add(pid)
                reply = {"pid": pid}
            elif request["op"] == "signal":
                if request["pid"] in children and request["sig"] == signal.SIGUSR1:
                    os.kill(request["pid"], signal.SIGUSR1)
                reply = {}
            else:
                reply = {"status": _stop(request["pid"], children)}
        except Exception as e:  # noqa: BLE001
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(reply).encode())
    _sweep(set())
    os._exit(0)


def _no_dumps() -> None:
    """No process of the sandbox may read the zygote's memory (same uid, when not root)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(4, 0)  # PR_SET_DUMPABLE: off
    except OSError:
        pass


def _fork_learner(sock, fds, bundle: str | None) -> int:
    fd_in, fd_out, log_fd = fds
    pid = os.fork()
    if pid:
        return pid
    try:  # the learner process
        sock.close()
        from kata import learner
        learner.run_forked(fd_in, fd_out, log_fd, bundle)
    finally:
        os._exit(70)


def _stop(pid: int, children: set) -> int | None:
    if pid not in children:
        return None
    _signal(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    children.discard(pid)
    _sweep(children)
    return _exit_code(status)


def _signal(pid: int, sig) -> None:
    for kill in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            kill()
            return
        except (ProcessLookupError, PermissionError):
            continue


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _sweep(alive: set) -> None:
    """Kill every process of the sandbox but the zygote, its init and the learner processes still
    in use: what learner code started and left behind (daemons, a fork bomb). Repeated until none
    is left, since a process may fork while it is being killed."""
    keep = {1, os.getpid(), os.getppid(), *alive}
    for _ in range(200):
        others = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in keep
                  and not _child_of(int(e), alive)]
        if not others:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.005)


def _child_of(pid: int, alive: set) -> bool:
    """Is `pid` in the process group of a learner process still in use?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2]) in alive
    except (OSError, IndexError, ValueError):
        return False
