"""A warm starter for the root scripts' test runs (``tests.support.run_cli``): one process per test
worker imports what the CLIs import (pyarrow, pandas, requests, our package: ~0.6 s of CPU that every
fresh interpreter pays again, most of a ``--manual`` run's cost), then forks a child for each run.

The child is a real process of its own, as ``python script.py args`` is: its own PID, working folder,
environment, stdin/stdout/stderr (the caller's, passed over the socket), argv and ``sys.path[0]``; the
script runs as ``__main__`` and the interpreter exits as usual (threads joined, atexit, streams
flushed), so exit codes, signals and output are those of a fresh start. Only the imports are shared.
Runs this cannot stand for (another interpreter setting, a ``preexec_fn``) start a fresh interpreter.
What differs: /proc/<pid>/cmdline is this script's (so the scheduler loops that tests start with
``start_cli``/``start_manager``, which other processes recognise by it, stay fresh interpreters), stdin is
/dev/null, and a traceback shows runpy's frames above the script's.

Protocol (a SOCK_SEQPACKET socket, fd in argv[1]): the caller sends one JSON request with the fds
[stdin, stdout, stderr]; this answers {"pid": ...}, then {"code": ...} (as ``Popen.returncode``) when
the child has ended. An empty message (the caller gone) ends this process."""

from __future__ import annotations

import gc
import importlib
import io
import json
import os
import runpy
import socket
import sys
from typing import Any

PRELOAD = (
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.parquet",
    "pandas",
    "requests",
    "crypto_data_export.commands.manager_cmd",
    "crypto_data_export.commands.backfill_cmd",
    "crypto_data_export.commands.service_cmd",
    "crypto_data_export.commands.files_cmd",
    "crypto_data_export.commands.selftest_cmd",
)


def serve(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """Answer requests until the caller goes; in a forked child, return its request and fds."""
    while True:
        message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            return None
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            sock.close()
            return request, fds
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())


def become(request: dict[str, Any], fds: list[int]) -> str:
    """Turn this forked child into ``python script args`` started in ``cwd`` with ``env``; the script."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    env: dict[str, str] = request["env"]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        raw: Any = io.FileIO(fd, "w", closefd=False)
        buffered = raw if unbuffered else io.BufferedWriter(raw)
        line_buffering = name == "stderr" and not unbuffered
        new = io.TextIOWrapper(buffered, old.encoding, old.errors, None, line_buffering, unbuffered)
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    script: str = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(script)
    return script


if __name__ == "__main__":
    channel = socket.socket(fileno=int(sys.argv[1]))
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the root scripts' folder
    for module in PRELOAD:
        importlib.import_module(module)
    gc.freeze()  # the preloaded objects live as long as any child: its collections and exit skip them
    child = serve(channel)
    if child is None:
        sys.exit(0)
    runpy.run_path(become(*child), run_name="__main__")
