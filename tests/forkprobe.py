"""Many fresh-interpreter probes for the price of one interpreter start.

``python tests/forkprobe.py`` reads ``{"preload": [...], "jobs": {name: {"code",
"cwd"}}}`` as JSON on stdin, imports the ``preload`` modules, then runs each job's code
in a child forked from that state, in its own working folder, as ``python -c code``
would (``''`` first on ``sys.path``, ``sys.argv`` ``['-c']``). It prints
``{"preloaded": [...], "jobs": {name: {"status", "stdout", "stderr"}}}``: what the
parent had loaded (top-level names) and each job's exit status and output. A child is
a fresh interpreter that has imported the preload and nothing else of a test's making:
its ``sys.modules`` is that plus what the job loads, so a probe that something is *not*
loaded holds as long as the preload did not load it (the caller checks ``preloaded``).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback


def _child(code: str, cwd: str, out: int, err: int) -> int:
    os.chdir(cwd)
    sys.path[0] = ""
    sys.argv = ["-c"]
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (stop.code is not None)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:  # as the interpreter would: traceback, status 1
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def run(jobs: dict) -> dict:
    """Each job forked from this process: its status, stdout and stderr."""
    found = {}
    for name, job in jobs.items():
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(_child(job["code"], job["cwd"], out.fileno(), err.fileno()))
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            out.seek(0)
            err.seek(0)
            found[name] = {"status": status, "stdout": out.read().decode(errors="replace"),
                           "stderr": err.read().decode(errors="replace")}  # fmt: skip
    return found


def main() -> int:
    request = json.load(sys.stdin)
    for name in request["preload"]:
        importlib.import_module(name)
    preloaded = sorted({name.split(".")[0] for name in sys.modules})
    print(json.dumps({"preloaded": preloaded, "jobs": run(request["jobs"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
