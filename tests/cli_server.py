"""A fork server for the CLI tests: ``python -m pipelines.run`` without paying its imports.

Every CLI test used to start a fresh interpreter, and on this project's 2-core CI machine
importing torch, Lightning (with torchmetrics, torchvision and torch._dynamo behind it) and
MLflow takes 6-9 s of each run, more than the tiny training most tests do. This server
imports those libraries once, then forks a child per command. The child is a real process
with its own pid, working directory, environment, file descriptors and exit status; it
runs the module as ``python -m`` does (``runpy`` with ``alter_sys``), and ends through the
interpreter's normal shutdown (threads joined, ``atexit`` handlers run). What differs from a
fresh interpreter: the third-party libraries are already imported, so a test that checks
what a command imports must start its own interpreter (tests/test_help.py does).

Protocol: one JSON request per line on stdin, one JSON reply per line on the file
descriptor given as the first argument. The server stays single-threaded, which is what
makes forking it safe.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import signal
import sys
import threading
import time
from typing import Any, NoReturn

#: what a CLI run imports that costs seconds; our own packages are left to each child, so a
#: plugin installed by a test, or a changed entry point, is seen as in a fresh interpreter
HEAVY_MODULES = (
    "torch",
    "torchvision",
    "lightning",
    "lightning.pytorch",
    "mlflow",
    "mlflow.pytorch",
    "hydra",
    "omegaconf",
    "sqlalchemy",
    "alembic",
)


def serve(reply_fd: int) -> dict[str, Any]:
    """Answer requests until stdin closes; in a forked child, return its request."""
    for name in HEAVY_MODULES:
        with contextlib.suppress(ImportError):  # optional: the child does without it
            importlib.import_module(name)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # whatever the libraries print never reaches the reply channel
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if threading.active_count() > 1:  # forking a threaded process can deadlock the child
            reply = {"refused": f"{threading.active_count()} threads in the server"}
        else:
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os.close(reply_fd)
                return request
            reply = _wait(pid, float(request["timeout"]))
        os.write(reply_fd, (json.dumps(reply) + "\n").encode())
    os._exit(0)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    """The child's exit status as ``subprocess`` reports it (minus the signal if killed)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return {"timed_out": True}
        time.sleep(0.01)


def run_module(request: dict[str, Any]) -> NoReturn:
    """Become ``python -m MODULE ARGS`` in the request's folder, environment and files."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.path[0] = os.getcwd()  # as `python -m` puts the working folder first
    importlib.invalidate_caches()  # files a test wrote since the server started
    sys.argv = [request["module"], *request["args"]]
    gc.freeze()  # the server's objects are never garbage: no collection walks them
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:  # as the interpreter does: die of SIGINT
        _shut_down()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _shut_down()
    os._exit(code)


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` ends an interpreter with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _shut_down() -> None:
    """The interpreter's shutdown, up to what anything can observe: threads joined, then
    ``atexit`` handlers (MLflow's, ``weakref.finalize``, logging's flush), then the streams.
    Tearing down the modules is skipped: for a process holding torch that takes seconds,
    and nothing runs in it that a test could see."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


if __name__ == "__main__":
    run_module(serve(int(sys.argv[1])))
