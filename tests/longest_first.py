"""Test files in order of their measured cost, the costliest first.

xdist sends a test file to each worker as it frees up (``--dist loadfile`` with
``--no-loadscope-reorder``, which keeps the collection's order): started first, the
few long files end about when the many short ones do, instead of one worker running
a long file alone at the end. Costs are CPU seconds from the timing plugin
(tests/file_cpu.json, rewritten by ``python tests/timing_plugin.py DIR --table``);
a file not in the table is taken as short, and keeps its place among the short ones.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

TABLE = Path(__file__).with_name("file_cpu.json")


def file_costs(table: Path = TABLE) -> dict[str, float]:
    try:
        return json.loads(table.read_text())
    except (OSError, ValueError):
        return {}  # no table: collection order


def order(items: list, costs: dict[str, float]) -> None:
    """Sort ``items`` (pytest's, in place) by their file's cost, keeping each file's
    tests together and in their order."""
    items.sort(key=lambda item: -costs.get(item.nodeid.split("::", 1)[0], 0.0))


def predicted_busiest(costs: dict[str, float], workers: int) -> float:
    """The busiest worker's CPU seconds when files go out costliest first, each to the
    worker that frees up first (what xdist does with the order above): the wall time on
    ``workers`` quiet cores, start-up aside."""
    load = [0.0] * workers
    for cost in sorted(costs.values(), reverse=True):
        heapq.heapreplace(load, load[0] + cost)
    return max(load)
