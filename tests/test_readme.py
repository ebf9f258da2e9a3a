"""The README's examples, run as written: every ``sh`` and ``python`` block, in order.

They run in a scratch folder laid out like the repository's top folder (``stations/``
and ``tests/data/shared`` linked, ``configs/center.toml`` copied), with three changes
so the run is short and does not collide with anything: simulated nights of 0.5
instead of 3 minutes, and a free port instead of 8600. ``aposos center serve`` is
started in the background and stopped at the end; ``make demo`` and ``make test``
(the first block) are what CI itself runs (``tests/test_demo.py`` covers the demo).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
SUBSTITUTIONS = ((r"--minutes 3\b", "--minutes 0.5"), (r"^minutes = 3$", "minutes = 0.5"))


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every sh and python block, in README order."""
    return [(m[1], m[2]) for m in FENCE.finditer(README.read_text()) if m[1] in ("sh", "python")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_folder(tmp: Path, port: int) -> Path:
    (tmp / "tests" / "data").mkdir(parents=True)
    (tmp / "tests" / "data" / "shared").symlink_to(REPO / "tests" / "data" / "shared")
    (tmp / "stations").symlink_to(REPO / "stations")
    (tmp / "configs").mkdir()
    config = (REPO / "configs" / "center.toml").read_text()
    (tmp / "configs" / "center.toml").write_text(config.replace("8600", str(port)))
    return tmp


def environment(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APOSOS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["APOSOS_CUBE_DIR"] = str(tmp / "cubes")
    env["HOME"] = str(tmp / "home")  # ~/.config/aposos/... lands in the scratch folder
    return env


def adapted(text: str, port: int) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text.replace("8600", str(port))


def wait_for_center(url: str, server: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the center exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the center did not start: {log.read_text()[-2000:]}")


def test_readme_has_runnable_blocks():
    blocks = readme_blocks()
    assert len(blocks) >= 10
    text = "\n".join(body for _, body in blocks)
    assert "[--" not in text and "..." not in text, "a README command with a placeholder"
    assert "center serve" in text and "add-user root --role admin" in text


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path):
    port = free_port()
    folder = scratch_folder(tmp_path / "top", port)
    env = environment(tmp_path)
    server = None
    log = tmp_path / "server.log"
    ran = []
    try:
        for k, (language, body) in enumerate(readme_blocks()):
            script = adapted(body, port)
            if script.lstrip().startswith("make "):
                continue  # `make demo` / `make test`: CI runs them itself
            if language == "python":
                command = [sys.executable, "-c", script]
            elif "aposos center serve" in script:
                assert server is None and script.strip().count("\n") == 0, script
                with open(log, "wb") as out:
                    server = subprocess.Popen(
                        ["bash", "-c", "exec " + script.split("#")[0]],
                        cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                wait_for_center(f"http://127.0.0.1:{port}", server, log)
                ran.append(k)
                continue
            else:
                command = ["bash", "-e", "-c", script]
            done = subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=900
            )
            where = f"README block {k}:\n{script}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"  # fmt: skip
            assert done.returncode == 0, where
            assert "Traceback" not in done.stderr and "Warning:" not in done.stderr, where
            assert "\r" not in done.stderr, where  # no progress bars off a terminal
            ran.append(k)
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    assert server is not None and len(ran) == len(readme_blocks()) - 1
    # what the walk-through promised exists
    for path in ("night/reduced/tracklets.tdm", "ids.csv", "model.json", "admin.token",
                 "plan.json", "pak1-agent/agent.sqlite"):  # fmt: skip
        assert (folder / path).exists(), path
    shutil.rmtree(tmp_path / "cubes", ignore_errors=True)
