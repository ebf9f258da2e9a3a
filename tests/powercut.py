"""A power cut at the file level: record a process's writes and syncs, then rebuild
its files as a cut at any moment would have left them.

:func:`build_recorder` compiles ``tests/powercut_recorder.c`` (an ``LD_PRELOAD`` shim)
with the system C compiler; a process started with :func:`recording_env` logs, in
order, every open, write (with its data), truncate, sync (``fsync``/``fdatasync``,
recorded once it has returned) and unlink of the files whose path starts with a prefix.
:func:`read_log` reads that log; :func:`files_after_cut` replays its first ``cut``
records the way a disk losing power may have kept them:

- what a file's last sync covered is kept;
- each write or truncate since that file's last sync is kept, lost, or (``torn``)
  kept only in part: a prefix cut at a 512-byte sector, the rest of its range left as
  it was (SQLite's powersafe-overwrite assumption: a write never damages bytes
  outside its own range); the choices are random and independent, so later writes
  may survive where earlier ones did not (no order without a sync).

What it does not model: a file's creation and an unlink are durable at once (a real
file system needs the directory synced; SQLite syncs it after creating a journal),
the ``-shm`` file is dropped (SQLite rebuilds its WAL index from the WAL), and the
disk never writes garbage or loses a synced write (a lying disk cache).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("powercut_recorder.c")
SECTOR = 512
HEAD = struct.Struct("<cIQQ")


def build_recorder(folder: Path) -> tuple[Path | None, str | None]:
    """Compile the shim into ``folder``; ``(path, None)`` or ``(None, why not)``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler (cc) to build the power-cut recorder"
    out = folder / "powercut_recorder.so"
    done = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(SOURCE), "-ldl", "-lpthread"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        return None, f"cc could not build the power-cut recorder: {done.stderr[-500:]}"
    return out, None


def recording_env(shim: Path, log: Path, prefix: Path) -> dict[str, str]:
    """The environment for a process whose writes under ``prefix`` are recorded."""
    return {**os.environ, "LD_PRELOAD": str(shim), "POWERCUT_LOG": str(log),
            "POWERCUT_PREFIX": str(prefix)}  # fmt: skip


@dataclass(frozen=True)
class Op:
    kind: str  # O open, W write, T truncate, S sync, U unlink
    path: str
    offset: int  # write offset, or truncate size
    data: bytes = b""


def read_log(log: Path) -> list[Op]:
    raw = log.read_bytes()
    ops, at = [], 0
    while at < len(raw):
        kind, plen, offset, n = HEAD.unpack_from(raw, at)
        at += HEAD.size
        path = raw[at : at + plen].decode()
        at += plen
        ops.append(Op(kind.decode(), path, offset, raw[at : at + n]))
        at += n
    return ops


def _apply(image: bytearray, op: Op, keep: int | None = None) -> None:
    if op.kind == "T":
        del image[op.offset :]
        image.extend(b"\0" * (op.offset - len(image)))
        return
    data = op.data if keep is None else op.data[:keep]
    end = op.offset + len(data)
    if len(image) < end:
        image.extend(b"\0" * (end - len(image)))
    image[op.offset : end] = data


def files_after_cut(ops: list[Op], cut: int, rng: random.Random | None,
                    *, skip=("-shm",)) -> dict[str, bytes]:  # fmt: skip
    """Each file's content after a power cut just before record ``cut``.

    ``rng`` None keeps only what was synced; otherwise each unsynced write is kept,
    lost or torn at random (see the module notes)."""
    durable: dict[str, bytearray] = {}
    pending: dict[str, list[Op]] = {}
    for op in ops[:cut]:
        if op.path.endswith(skip):
            continue
        if op.kind == "O":
            durable.setdefault(op.path, bytearray())
            pending.setdefault(op.path, [])
        elif op.kind in "WT":
            durable.setdefault(op.path, bytearray())
            pending.setdefault(op.path, []).append(op)
        elif op.kind == "S":
            for p in pending.pop(op.path, []):
                _apply(durable[op.path], p)
            pending[op.path] = []
        elif op.kind == "U":
            durable.pop(op.path, None)
            pending.pop(op.path, None)
    out = {}
    for path, image in durable.items():
        image = bytearray(image)
        for op in pending.get(path, []) if rng is not None else []:
            fate = rng.random()
            if fate < 0.4:
                continue  # lost
            if op.kind == "W" and fate < 0.6 and len(op.data) > SECTOR:
                _apply(image, op, SECTOR * rng.randrange(len(op.data) // SECTOR + 1))
            else:
                _apply(image, op)
        out[path] = bytes(image)
    return out


def write_files(files: dict[str, bytes], folder: Path) -> None:
    """Write the rebuilt files into ``folder`` under their own names."""
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (folder / Path(path).name).write_bytes(data)
