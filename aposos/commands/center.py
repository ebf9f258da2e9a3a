"""``aposos center``: run and administer the data center.

Every action finds the center's configuration in --config, $APOSOS_CENTER_CONFIG or
./configs/center.toml, and refuses to run without one (so a token is never made in a
database the running center does not use).

aposos center add-user root --role admin --token-file admin.token   # the first admin
aposos center serve --config configs/center.toml [--host H] [--port P]
aposos center add-station CODE      # prints the station's new token, once
aposos center add-user NAME --role analyst|admin [--valid-days N]
aposos center enrol-code CODE       # a one-time code the station operator types
aposos center rotate NAME           # a new token; the old one stays valid a while
aposos center revoke NAME
aposos center tokens                # who holds tokens (never the tokens)
aposos center catalogue put FILE --token-file F [--url URL]   # admin: a new snapshot
aposos center plan --night 2026-03-19 [--out plan.json] [--plot-dir plots/]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aposos.cli import CommandError
from aposos.commands.inputs import TOKEN_HELP

CONFIG_ENV = "APOSOS_CENTER_CONFIG"
CENTER_ENV = "APOSOS_CENTER_URL"
DEFAULT_CONFIG = Path("configs/center.toml")
# actions that may make the database (the first admin is made before the first serve)
CREATES_DATABASE = ("serve", "add-user", "add-station", "plan")


def _config(args):
    from aposos.center.config import load_config

    path = args.config or os.environ.get(CONFIG_ENV)
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    if path is None:
        raise CommandError(
            f"no center configuration: give --config FILE or set ${CONFIG_ENV} "
            f"(or run from the folder that holds {DEFAULT_CONFIG})"
        )
    if not Path(path).is_file():
        raise CommandError(f"no configuration file at {path}")
    try:
        return load_config(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :])
    return None


def _store_of(config, action: str = "serve"):
    from sqlalchemy.exc import SQLAlchemyError

    from aposos.center.store import Store

    file = _sqlite_file(config.database_url)
    if file is not None and not file.exists():
        if action not in CREATES_DATABASE:
            raise CommandError(
                f"no center database at {file}: check --config / ${CONFIG_ENV} (the center "
                "creates it when it first serves or adds a user)"
            )
        print(f"# new center database at {file}", file=sys.stderr)
    try:
        store = Store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
        store.upgrade()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CommandError(f"cannot open the database: {cause}") from None
    return store


def _store(args):
    return _store_of(_config(args), args.center_action)


def _give_token(token: str, name: str, token_file: str | None) -> None:
    if token_file is None:
        print(token)
        print(f"# token for {name}: shown this once, keep it secret", file=sys.stderr)
        return
    path = Path(token_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    print(f"token for {name} written to {path}")


def _issue(args, name: str, role: str) -> int:
    from aposos.center.auth import issue_token

    store = _store(args)
    try:
        token = issue_token(store, name, role, valid_days=args.valid_days)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    _give_token(token, name, args.token_file)
    return 0


def cmd_serve(args) -> int:
    from aposos.center.api import serve

    config = _config(args).with_overrides(host=args.host, port=args.port)
    _store_of(config, "serve").close()  # the database opens and is upgraded, or one clear error
    if args.no_worker:
        from dataclasses import replace

        config = replace(config, worker=replace(config.worker, enabled=False))
    serve(config, log_level="debug" if args.verbose else "info")
    return 0


def _station_codes(folder: Path) -> list[str]:
    from aposos.correlate.sites import read_station_sites

    try:
        return [s.code for s in read_station_sites(folder)]
    except FileNotFoundError:
        return []


def cmd_add_station(args) -> int:
    config = _config(args)
    codes = _station_codes(Path(config.stations_dir))
    if args.code not in codes and not args.force:
        known = ", ".join(codes) or "none"
        raise CommandError(
            f"no station file with [site] code = {args.code!r} in {config.stations_dir} "
            f"(known: {known}); add its TOML file first, or give --force"
        )
    return _issue(args, args.code, "station")


def cmd_add_user(args) -> int:
    return _issue(args, args.name, args.role)


def cmd_enrol_code(args) -> int:
    from aposos.center.auth import new_enrolment_code

    store = _store(args)
    try:
        code = new_enrolment_code(store, args.code, valid_hours=args.valid_hours)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    print(code)
    print(
        f"# one-time code for {args.code}, valid {args.valid_hours:g} h: at the station run "
        f"'aposos station enrol --station stations/<file>.toml {code}'",
        file=sys.stderr,
    )
    return 0


def cmd_rotate(args) -> int:
    from aposos.center.auth import rotate_token

    store = _store(args)
    try:
        token = rotate_token(
            store, args.name, overlap_hours=args.overlap_hours, valid_days=args.valid_days
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    _give_token(token, args.name, args.token_file)
    return 0


def cmd_revoke(args) -> int:
    store = _store(args)
    try:
        revoked = store.revoke(args.name)
    finally:
        store.close()
    if not revoked:
        raise CommandError(f"{args.name} holds no live token")
    print(f"revoked the token of {args.name}")
    return 0


def cmd_tokens(args) -> int:
    store = _store(args)
    try:
        rows = store.list_principals()
    finally:
        store.close()
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "live"
        if not r["revoked_at"] and r.get("expires_at"):
            state += f" until {r['expires_at']}"
        print(f"{r['name']:<32} {r['role']:<8} since {r['created_at']}  {state}")
    return 0


def cmd_catalogue_put(args) -> int:
    from aposos.center.client import CenterClient, CenterError
    from aposos.commands.inputs import resolve_token

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"no catalogue file at {path}")
    token = resolve_token(args.token_file)
    url = args.url or os.environ.get(CENTER_ENV)
    if url is None:
        config = _config(args)
        url = f"http://{config.host}:{config.port}"
    try:
        with CenterClient(url, token, timeout=600.0) as client:
            answer = client.put_catalogue(path, args.name)
    except CenterError as exc:
        raise CommandError(f"the center refused the catalogue: {exc}") from None
    snap = answer.get("snapshot") or {}
    state = "new snapshot" if answer.get("new") else "already known as snapshot"
    epochs = f"{str(snap.get('epoch_min'))[:10]} .. {str(snap.get('epoch_max'))[:10]}"
    print(f"{path.name}: {state} {snap.get('id')} ({snap.get('n_objects')} objects, epochs "
          f"{epochs}); {answer.get('jobs_woken', 0)} waiting correlation(s) woken")  # fmt: skip
    for problem in answer.get("problems") or []:
        print(f"  warning: {problem}", file=sys.stderr)
    return 0


def cmd_plan(args) -> int:
    import json

    from aposos.center.tasking import replan
    from aposos.commands.inputs import parse_utc

    config = _config(args)
    now = None if args.now is None else parse_utc(args.now, "--now")
    store = _store_of(config, "plan")
    try:
        plan = replan(store, config, args.night, now=now, trigger="command")
    finally:
        store.close()
    summary = plan.summary()
    if args.out:
        Path(args.out).write_text(json.dumps(plan.to_wire(), indent=1) + "\n")
    if args.plot_dir:
        from aposos.center.tasking_plot import plot_night

        for path in plot_night(plan, args.plot_dir, fmt=args.plot_format):
            print(f"plot: {path}")
    print(f"night {summary['night']}: {summary['tasks']} tasks {summary['by_station']}; "
          f"observes {summary['observed_objects']} of {summary['observable_objects']} "
          f"observable catalogue objects ({100 * summary['coverage']:.1f} %)")  # fmt: skip
    for code, window in summary["windows"].items():
        print(f"  {code}: " + (f"dark {window[0]} .. {window[1]}" if window else "never dark"))
    return 0


EXAMPLES = {
    "serve": "example:\n  aposos center serve --config configs/center.toml   # docs at /docs\n",
    "add-station": "example:\n  aposos center add-station PAK1 --token-file pak1.token\n",
    "add-user": "examples:\n  aposos center add-user root --role admin --token-file admin.token"
    "   # the first admin\n  aposos center add-user alice --role analyst --valid-days 90\n",
    "enrol-code": "example:\n  aposos center enrol-code PAK1 --valid-hours 24\n",
    "rotate": "example:\n  aposos center rotate PAK1 --overlap-hours 24 --token-file pak1.token\n",
    "revoke": "example:\n  aposos center revoke alice\n",
    "tokens": "example:\n  aposos center tokens --config configs/center.toml\n",
    "plan": "example:\n  aposos center plan --night 2020-10-02 --out plan.json --plot-dir plots/\n",
    "put": "example:\n  aposos center catalogue put active.3le --url http://127.0.0.1:8600 "
    "--token-file admin.token\n",
}


def register(subparsers) -> None:
    """Add ``aposos center`` and its actions."""
    parser = subparsers.add_parser(
        "center",
        help="run and administer the data center",
        description="Run the data-center HTTP service and manage its access tokens. "
        f"Every action reads the center's configuration (--config, ${CONFIG_ENV}, or "
        f"{DEFAULT_CONFIG} in the current folder) and refuses to run without one.",
    )
    actions = parser.add_subparsers(dest="center_action", metavar="ACTION", required=True)

    def add(name, func, help_text):
        p = actions.add_parser(
            name, help=help_text, description=help_text, epilog=EXAMPLES.get(name)
        )
        p.add_argument(
            "--config",
            help=f"center configuration (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG} if present)",
        )
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "serve the HTTP API (and run the correlation worker)")
    p.add_argument("--host", help="address to listen on (default from the config)")
    p.add_argument("--port", type=int, help="port to listen on (default from the config)")
    p.add_argument("--no-worker", action="store_true", help="serve without correlating")

    p = add("add-station", cmd_add_station, "register a station and print its new token once")
    p.add_argument("code", help="station code, as in stations/*.toml [site] code")
    p.add_argument("--token-file", help="write the token to this file (mode 600) instead")
    p.add_argument("--valid-days", type=float, help="the token expires after this many days")
    p.add_argument(
        "--force", action="store_true",
        help="register the code even though no station file in stations_dir has it",
    )  # fmt: skip

    p = add("add-user", cmd_add_user, "add an analyst or admin and print the new token once")
    p.add_argument("name", help="user name")
    p.add_argument("--role", required=True, choices=("analyst", "admin"))
    p.add_argument("--token-file", help="write the token to this file (mode 600) instead")
    p.add_argument("--valid-days", type=float, help="the token expires after this many days")

    p = add(
        "enrol-code",
        cmd_enrol_code,
        "make a one-time enrolment code a station trades for its token",
    )
    p.add_argument("code", help="station code, as in stations/*.toml [site] code")
    p.add_argument("--valid-hours", type=float, default=24.0, help="default 24")

    p = add("rotate", cmd_rotate, "give a holder a new token; the old one stays valid a while")
    p.add_argument("name", help="station code or user name")
    p.add_argument("--overlap-hours", type=float, default=24.0, help="old token kept (24)")
    p.add_argument("--valid-days", type=float, help="the new token expires after this many days")
    p.add_argument("--token-file", help="write the token to this file (mode 600) instead")

    p = add("revoke", cmd_revoke, "revoke the token of a station or user")
    p.add_argument("name", help="station code or user name")

    add("tokens", cmd_tokens, "list token holders, roles and revocations (never tokens)")

    cat = actions.add_parser(
        "catalogue", help="load catalogues into a running center (admin)",
        description="Catalogue snapshots of a running center, over its HTTP API.",
    )  # fmt: skip
    cat_actions = cat.add_subparsers(dest="catalogue_action", metavar="ACTION", required=True)
    p = cat_actions.add_parser(
        "put", help="put a TLE/3LE or OMM file as a new catalogue snapshot",
        description="Send a TLE/3LE or OMM (JSON, XML, CSV) file to the center as a new "
        "catalogue snapshot (PUT /api/v1/catalogue); needs an admin token.",
        epilog=EXAMPLES["put"],
    )  # fmt: skip
    p.add_argument("file", help="catalogue file")
    p.add_argument(
        "--url", help=f"the center's URL (default: ${CENTER_ENV}, else host and port of --config)"
    )
    p.add_argument("--config", help="center configuration, for the default URL")
    p.add_argument("--token-file", help="an admin's token: " + TOKEN_HELP)
    p.add_argument("--name", help="source name to record (default: the file name)")
    p.set_defaults(func=cmd_catalogue_put)
    p = add("plan", cmd_plan, "plan a night of joint observations for every station and store it")
    p.add_argument("--night", required=True, help="the date the night starts on, YYYY-MM-DD")
    p.add_argument("--out", help="also write the plan (JSON) to this file")
    p.add_argument("--now", help="re-plan from this UTC time on, keeping earlier tasks (ISO)")
    p.add_argument("--plot-dir", help="write a timeline and a sky map per station here")
    p.add_argument("--plot-format", choices=("png", "svg"), default="png")
