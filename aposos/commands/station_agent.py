"""``aposos station run | status | upload``: the station agent and its outbox.

aposos station run --station stations/X.toml [--source folder|simulator|indi]
aposos station status --station stations/X.toml
aposos station upload DIR_OR_TDM... --station stations/X.toml [--wait S]
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

from aposos.cli import CommandError

__all__ = ["register"]

log = logging.getLogger("aposos.station")


def _load(args, *, check_token: bool = True):
    from aposos.station.agent_config import load_agent_config

    if not Path(args.station).is_file():
        raise CommandError(f"no station file at {args.station}")
    try:
        return load_agent_config(
            args.station, source=getattr(args, "source", None), check_token=check_token
        )
    except ValueError as exc:
        text = str(exc)
        if "\n" in text:  # every problem, one per line, before anything runs
            print(text, file=sys.stderr)
            raise CommandError("the station file has problems (listed above)") from None
        raise CommandError(text) from None


def _setup_logging(level: str, log_file: Path | None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("httpx", "httpcore", "numba"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def cmd_run(args) -> int:
    # the handlers go in first: a SIGTERM while the agent is still starting (loading
    # its configuration, modules or star catalogue) then ends it cleanly too
    stops: list[int] = []
    agents: list = []

    def on_signal(signum, _frame):
        stops.append(signum)
        if len(stops) > 1:
            raise KeyboardInterrupt  # a second signal: stop now
        log.info("%s: finishing the current frame and field, then stopping",
                 signal.Signals(signum).name)  # fmt: skip
        for agent in agents:
            agent.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        from aposos.station.agent import StationAgent

        config = _load(args)
        level = "debug" if args.verbose >= 2 else ("info" if args.verbose else args.log_level)
        _setup_logging(level, config.log_file)
        if args.verbose:  # -v: the agent's own decisions in detail, libraries at info
            logging.getLogger("aposos").setLevel(logging.DEBUG)
        agent = StationAgent(config)
        agents.append(agent)
        if stops:  # asked to stop before the agent existed
            agent.stop()
        log.info("station %s: source %s, center %s, work folder %s", config.station.code,
                 config.source, config.station.center.url, config.work_dir)  # fmt: skip
        agent.run(until_exhausted=not args.forever)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    log.info("station %s: stopped", config.station.code)
    return 0


def cmd_status(args) -> int:
    import json
    from datetime import UTC, datetime

    from aposos.station.outbox import AgentStore

    config = _load(args, check_token=False)
    if not config.database.is_file():
        raise CommandError(f"no agent state at {config.database}: the agent has not run yet")
    store = AgentStore(config.database)
    try:
        today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00")
        box = store.outbox_counts()
        doc = {
            "station": config.station.code,
            "outbox_backlog": box["waiting"],
            "delivered": box["delivered"],
            "rejected": box["rejected"],
            "last_upload": store.get("last_upload"),
            "last_heartbeat": store.get("last_heartbeat"),
            "last_error": store.get("last_error"),
            "frames_today": store.frame_counts(since_iso=today),
            "frames_total": store.frame_counts(),
        }
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(doc, indent=1))
        return 0
    today_n = doc["frames_today"]
    print(f"station        {doc['station']}")
    print(f"outbox backlog {doc['outbox_backlog']} tracklet(s) ({doc['delivered']} delivered, "
          f"{doc['rejected']} refused by the center)")  # fmt: skip
    print(f"last upload    {doc['last_upload'] or 'never'}")
    print(f"last heartbeat {doc['last_heartbeat'] or 'never'}")
    print(f"last error     {doc['last_error'] or 'none'}")
    print(f"frames today   {sum(today_n.values())} taken: {today_n['solved']} solved, "
          f"{today_n['unsolved']} unsolved, {today_n['failed']} failed, "
          f"{today_n['quarantined']} quarantined, {today_n['captured']} waiting")  # fmt: skip
    return 0


def _read_tracklets(inputs) -> list:
    from aposos.formats.tdm import read_tdm

    tracklets, problems = [], []
    for name in inputs:
        p = Path(name)
        files = [p / "tracklets.tdm"] if p.is_dir() else [p]
        for f in files:
            if not f.is_file():
                raise CommandError(f"{name}: no tracklets.tdm in the folder" if p.is_dir()
                                   else f"{name}: no such file")  # fmt: skip
            if not f.read_text().strip():
                continue  # a reduction without tracklets
            for parsed in read_tdm(f):
                if parsed.error:
                    problems.append(f"{f}: {parsed.error}")
                elif parsed.tracklet is not None:
                    tracklets.append(parsed.tracklet)
    if problems:
        raise CommandError(f"{len(problems)} problem(s) reading the tracklets: {problems[0]}")
    return tracklets


def cmd_upload(args) -> int:
    from aposos.station.delivery import Backoff, Courier
    from aposos.station.outbox import AgentStore
    from aposos.station.uplink import CenterLink

    config = _load(args)
    tracklets = _read_tracklets(args.inputs)
    code = config.station.code
    foreign = [t.uuid for t in tracklets if t.station != code]
    if foreign:
        raise CommandError(f"{len(foreign)} tracklet(s) are not of station {code} "
                           f"(first: {foreign[0]})")  # fmt: skip
    store = AgentStore(config.database)
    queued = store.enqueue([t.to_wire() for t in tracklets])
    print(f"{len(tracklets)} tracklet(s) read, {queued} new in the outbox", file=sys.stderr)
    link = CenterLink(config.station.center.url, code, config.station.token_path,
                      timeout_s=config.upload.timeout_s,
                      ca_file=config.station.ca_path)  # fmt: skip
    up = config.upload
    courier = Courier(store, link, lambda: {}, batch=up.batch,
                      backoff=Backoff(up.backoff_initial_s, up.backoff_max_s))  # fmt: skip
    deadline = time.monotonic() + args.wait
    try:
        while time.monotonic() < deadline and store.due(1, now=float("inf")):
            if not courier.upload_once():
                wait = courier.next_upload - time.monotonic()
                if store.due(1, now=float("inf")) and wait > 0:
                    time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        waiting = store.backlog()
        last_error = store.get("last_error")
    finally:
        link.close()
        store.close()
    if waiting:
        raise CommandError(
            f"{waiting} tracklet(s) still in the outbox after {args.wait:g} s (the agent or a "
            f"later 'aposos station upload' delivers them); last error: {last_error}"
        )
    print(f"outbox empty: everything delivered to {config.station.center.url}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``run``, ``status`` and ``upload`` to the ``station`` group's sub-parsers."""
    run = sub.add_parser(
        "run",
        help="run the station all night: take, reduce, archive and deliver frames",
        description=(
            "Run the station agent: take frames from the source named in the station file's "
            "[agent] table (a folder the camera writes into, the sky simulator, or INDI "
            "devices), reduce them field by field, archive them, and deliver every tracklet "
            "to the data center exactly once through a durable outbox; send a heartbeat "
            "every minute and follow the center's tasks. Stops cleanly on SIGTERM/SIGINT."
        ),
        epilog="example:\n  aposos station run --station stations/pakistan.toml --forever\n",
    )
    run.add_argument("--station", required=True, help="station file (stations/<name>.toml)")
    run.add_argument(
        "--source",
        choices=("folder", "simulator", "indi"),
        help="frame source (default: agent.source in the station file)",
    )
    run.add_argument("--forever", action="store_true",
                     help="keep running when the source has no more frames (the simulator's "
                     "night ended) until SIGTERM")  # fmt: skip
    run.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level (default info); logs go to agent.log_file or stderr",
    )
    run.set_defaults(func=cmd_run)

    status = sub.add_parser(
        "status",
        help="the agent's outbox backlog, last upload, last error and frames today",
        description="Print the station agent's state from its SQLite file (the agent may "
        "be running).",
        epilog="example:\n  aposos station status --station stations/pakistan.toml --format json\n",
    )
    status.add_argument("--station", required=True, help="station file (stations/<name>.toml)")
    status.add_argument(
        "--format", choices=("table", "json"), default="table", help="default table"
    )
    status.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the same as --format json",
    )
    status.set_defaults(func=cmd_status)

    upload = sub.add_parser(
        "upload",
        help="deliver an existing reduction (folder or TDM file) through the outbox",
        description="Queue the tracklets of an 'aposos station reduce' output folder (its "
        "tracklets.tdm) or of TDM files in the agent's outbox, and deliver them. Tracklets "
        "already delivered are not sent again; the center keeps each UUID once.",
        epilog="example:\n  aposos station upload night/reduced --station "
        "stations/pakistan.toml --wait 30\n",
    )
    upload.add_argument("inputs", nargs="+", metavar="DIR_OR_TDM",
                        help="reduction folders or TDM files")  # fmt: skip
    upload.add_argument("--station", required=True, help="station file (stations/<name>.toml)")
    upload.add_argument("--wait", type=float, default=60.0, metavar="S",
                        help="give up after this many seconds (default 60); what is left "
                        "stays in the outbox")  # fmt: skip
    upload.set_defaults(func=cmd_upload)
