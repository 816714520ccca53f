"""What the benchmark sections share: a scratch directory, and a measurement in a fresh process
(its memory and its start-up are its own)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the directory that holds the ``actors`` package (a checkout, or site-packages once installed):
#: the benchmark's subprocesses import the very copy that runs it
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary directory for a section's databases, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="execd-bench-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def in_subprocess(module: str, function: str, *args: Any, timeout: float = 3600) -> dict[str, Any]:
    """``actors.tools.<module>.<function>(*args)`` in a fresh process; its JSON answer, or the
    error's tail."""
    code = (f"import json; from actors.tools import {module}; "
            f"print(json.dumps({module}.{function}(*{args!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)})
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM a benchmark's server process; killed if it has not exited 30 s later."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def startup_line(start: dict[str, Any], label: str) -> str:
    """A start-up section's line of the report (``startup``, ``startup_100k``)."""
    if "error" in start:
        return f"{label}: {start}"
    return (f"Startup: ready in {start.get('ready_seconds')} s with {start.get('accounts')} accounts and"
            f" {start.get('fills_in_db')} fills")
