"""The ``aposos`` command line as operators and analysts meet it (issue 14).

Every bad input here once printed a traceback, a storage library's message, a silent
success or a Python warning; each must now give one clear line and an honest exit
status. The commands run in this process (tests/clirun.py: ``main(argv)`` with its own
environment, folder, warnings and logging); the one pipe into ``head`` runs in a shell.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import clirun
import pytest
from shared_data import CATALOGUE_NEW

REPO = Path(__file__).resolve().parent.parent
STATIONS = REPO / "stations"
PERU = STATIONS / "peru.toml"
AT = "2020-10-02T23:00:00"


def aposos(*args, cwd=None, env=None, shell_tail=None):
    """Run ``aposos ARGS`` in this process (clirun.run), or in a shell piped into
    ``shell_tail`` when given; returns exit status, stdout and stderr."""
    if not shell_tail:
        return clirun.run(*args, cwd=cwd, env=env)
    base = {k: v for k, v in os.environ.items() if not k.startswith("APOSOS_")}
    command = [sys.executable, "-m", "aposos", *map(str, args)]
    command = ["bash", "-c", " ".join(f"'{c}'" for c in command) + " | " + shell_tail]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=cwd or REPO,
        env={**base, **(env or {})},
    )  # fmt: skip


def one_clear_line(done, *words, status=2):
    """Exit ``status``, no traceback, stderr is one line that contains ``words``."""
    assert done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# ------------------------------------------------------------ southern and western sites


def test_negative_site_and_station_stand_for_a_site():
    peru = "-17.08,-70.87,3000"  # the [site] of stations/peru.toml
    runs = [
        aposos("catalog", "predict", CATALOGUE_NEW, "--site", peru, "--at", AT, "--format", "json"),
        aposos("catalog", "predict", CATALOGUE_NEW, "--station", PERU, "--at", AT, "--format", "json"),
        aposos("catalog", "predict", CATALOGUE_NEW, "--station", "PER1", "--at", AT, "--format", "json"),
        aposos("catalog", "predict", CATALOGUE_NEW, "--site", "2403", "--at", AT, "--format", "json"),
    ]  # fmt: skip
    for done in runs:
        assert done.returncode == 0, done.stderr
    rows = [json.loads(done.stdout) for done in runs]
    assert rows[0] and all(r == rows[0] for r in rows)
    minus = aposos("catalog", "predict", CATALOGUE_NEW, "--site", "-16.47,-71.49,2400", "--at", AT)
    assert minus.returncode == 0, minus.stderr
    assert "from -16.4700,-71.4900,2400 m" in minus.stdout


def test_a_time_with_an_offset_is_utc_without_a_warning():
    utc = aposos("catalog", "predict", CATALOGUE_NEW, "--site", "33.674,51.318,3600",
                 "--at", "2020-10-02T17:00:00", "--format", "csv")  # fmt: skip
    local = aposos("catalog", "predict", CATALOGUE_NEW, "--site", "33.674,51.318,3600",
                   "--at", "2020-10-02T20:30:00+03:30", "--format", "csv")  # fmt: skip
    assert local.returncode == 0 and local.stderr == ""
    assert local.stdout == utc.stdout and len(local.stdout.splitlines()) > 10


@pytest.mark.parametrize(
    "site, words",
    [("north", ["--site", "'north'", "PER1"]), ("95,0,0", ["--site", "latitude"]),
     ("1,2", ["--site", "LAT,LON,ALT_M"]), ("XYZ9", ["XYZ9", "station code"])],
)  # fmt: skip
def test_bad_sites_give_one_line(site, words):
    one_clear_line(aposos("catalog", "predict", CATALOGUE_NEW, "--site", site, "--at", AT), *words)


# ------------------------------------------------------------ failures are not hidden


@pytest.mark.parametrize(
    "content, words",
    [(b"", ["empty file"]), (bytes(range(256)) * 8, ["binary"]),
     (b"hello\nworld\n", ["no element set could be read"]), (None, ["folder"])],
)  # fmt: skip
def test_catalog_info_refuses_what_is_not_a_catalogue(tmp_path, content, words):
    path = tmp_path / "bad.3le"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    one_clear_line(aposos("catalog", "info", path), str(path), *words)


def test_catalog_info_formats():
    out = {}
    for fmt in ("table", "json", "csv", "text"):
        done = aposos("catalog", "info", CATALOGUE_NEW, "--format", fmt)
        assert done.returncode == 0, done.stderr
        out[fmt] = done.stdout
    objects = json.loads(out["json"])["objects"]
    assert f"all,{objects}" in out["csv"] and out["text"] == out["table"]


def test_correlate_counts_failed_inputs_apart(tmp_path):
    (tmp_path / "junk.tdm").write_text("junk junk\n")
    (tmp_path / "folder").mkdir()
    done = aposos("correlate", "junk.tdm", "missing.tdm", "folder", "--catalog", CATALOGUE_NEW,
                  "--stations", STATIONS, "--cube-dir", "cubes", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2  # every input failed
    records = json.loads(done.stdout)
    assert [r["status"] for r in records] == ["failed"] * 3
    lines = done.stderr.strip().splitlines()
    assert lines[:3] == [
        "aposos correlate: junk.tdm: not a CCSDS TDM (no CCSDS_TDM_VERS line or <tdm> root)",
        "aposos correlate: missing.tdm: no such file",
        "aposos correlate: folder: a folder, not a TDM or IOD file",
    ]
    assert "0 tracklet(s)" in lines[3] and "3 input(s) failed" in lines[3]
    assert "Traceback" not in done.stderr


def test_verbose_shows_our_decisions_not_library_debug(tmp_path):
    done = aposos("-v", "correlate", "missing.tdm", "--catalog", CATALOGUE_NEW,
                  "--stations", STATIONS, "--format", "table", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "aposos.correlate: missing.tdm segment None: failed" in done.stderr
    assert " DEBUG numba" not in done.stderr and " DEBUG zarr" not in done.stderr


# ------------------------------------------------------------ administration


def write_config(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "center.toml"
    path.write_text(f'[center]\ndata_dir = "data"\nstations_dir = "{STATIONS}"\n{extra}')
    return path


def test_admin_commands_need_the_configured_center(tmp_path):
    done = aposos("center", "tokens", cwd=tmp_path)
    one_clear_line(done, "no center configuration", "--config", "APOSOS_CENTER_CONFIG")
    assert list(tmp_path.iterdir()) == []  # no database made on the way
    config = write_config(tmp_path / "c")
    one_clear_line(aposos("center", "tokens", "--config", config), "no center database")
    one_clear_line(aposos("center", "revoke", "bob", "--config", config), "no center database")
    assert not (tmp_path / "c" / "data").exists()


def test_admin_bootstrap_and_station_files(tmp_path):
    config = write_config(tmp_path / "c")
    env = {"APOSOS_CENTER_CONFIG": str(config)}
    made = aposos("center", "add-user", "root", "--role", "admin", "--token-file",
                  tmp_path / "admin.token", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "new center database" in made.stderr and "admin.token" in made.stdout
    assert (tmp_path / "admin.token").read_text().startswith("aposos_")
    shown = aposos("center", "add-user", "alice", "--role", "analyst", env=env)
    assert shown.returncode == 0 and shown.stdout.strip().startswith("aposos_")
    one_clear_line(aposos("center", "add-station", "XX9", env=env), "XX9", "PER1", "--force")
    assert aposos("center", "add-station", "XX9", "--force", env=env).returncode == 0
    assert aposos("center", "add-station", "PER1", env=env).returncode == 0
    listed = aposos("center", "tokens", env=env).stdout
    assert all(name in listed for name in ("root", "alice", "XX9", "PER1"))


@pytest.mark.parametrize(
    "extra, words",
    [('port = "eighty"\n', ["port", "integer", "eighty"]),
     ("page_size = 1.5\n", ["page_size", "integer"]),
     ("proxy_headers = 1\n", ["proxy_headers", "true or false"]),
     ("[worker]\npoll_seconds = \"fast\"\n", ["poll_seconds", "number"]),
     ("colour = 1\n", ["unknown keys", "colour"])],
)  # fmt: skip
def test_config_mistakes_name_the_key(tmp_path, extra, words):
    config = write_config(tmp_path, extra)
    one_clear_line(aposos("center", "tokens", "--config", config), *words)


def test_token_settings_are_named_one_way(tmp_path):
    env = {"HOME": str(tmp_path)}
    query = aposos("query", "uct", "--center", "http://127.0.0.1:9", env=env)
    put = aposos("center", "catalogue", "put", CATALOGUE_NEW, "--url", "http://127.0.0.1:9",
                 env=env)  # fmt: skip
    for done in (query, put):
        one_clear_line(done, "no token file", "--token-file", "APOSOS_TOKEN_FILE", "APOSOS_TOKEN")
    for args in (("query", "uct"), ("center", "catalogue", "put")):
        assert "APOSOS_TOKEN_FILE" in aposos(*args, "--help").stdout.replace("\n", " ")
    (tmp_path / "t").write_text("aposos_x\n")
    reach = aposos("query", "uct", "--center", "http://127.0.0.1:9",
                   env={"APOSOS_TOKEN_FILE": str(tmp_path / "t")})  # fmt: skip
    one_clear_line(reach, "cannot reach")


# ------------------------------------------------------------ output and help


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_version_and_quiet_pipes():
    done = aposos("--version")
    assert done.returncode == 0 and done.stdout.startswith("aposos ")
    piped = aposos("catalog", "predict", CATALOGUE_NEW, "--site", "-16.47,-71.49,2400",
                   "--at", AT, shell_tail="head -2")  # fmt: skip
    assert len(piped.stdout.splitlines()) == 2
    assert piped.stderr == "", piped.stderr  # no "Broken pipe", no traceback


def walk(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def test_every_command_helps_with_an_example_and_one_format_vocabulary():
    from aposos.cli import build_parser

    seen = 0
    for path, parser in walk(build_parser()):
        if any(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
            continue  # a group: its actions carry the examples
        text = parser.format_help()
        assert "example" in text, f"aposos {' '.join(path)} --help has no example"
        for action in parser._actions:
            if action.dest == "format" and action.choices:
                assert set(action.choices) <= {"table", "json", "csv"}, path
            if action.dest in ("quiet",):
                assert "-q" in action.option_strings and "--quiet" in action.option_strings
        assert "--no-progress" not in text or "--quiet" in text
        seen += 1
    assert seen >= 20


def test_the_frame_is_named_one_way():
    predict = aposos("catalog", "predict", "--help").stdout.replace("\n", " ")
    assert "GCRS axes" in predict and "EME2000" in predict
    readme = (REPO / "README.md").read_text().replace("\n", " ")
    assert "in GCRS axes" in readme and "ICRS axes" not in readme


def test_an_unforeseen_error_is_one_line(monkeypatch, capsys):
    from aposos.cli import main
    from aposos.commands import catalog

    def broken(args):
        raise RuntimeError("the zarr store moved")

    monkeypatch.setattr(catalog, "run_info", broken)
    assert main(["catalog", "info", str(CATALOGUE_NEW)]) == 70
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "RuntimeError: the zarr store moved" in err


def test_unreadable_frames_are_named_in_one_line_without_library_advice(tmp_path):
    from aposos.commands.station import short_reason

    astropy = ("not a readable FITS file (No SIMPLE card found, this file does not appear to "
               "be a valid FITS file. If this is really a FITS file, try with "
               "ignore_missing_simple=True)")  # fmt: skip
    assert short_reason(astropy).endswith("valid FITS file.)")
    assert short_reason("a\nb") == "a" and short_reason(None) == "no reason given"
    (tmp_path / "junk.fits").write_text("hello\n")
    (tmp_path / "empty.fits").write_bytes(b"")
    done = aposos("station", "reduce", tmp_path, "--station", PERU, "--out", tmp_path / "out")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines[:2]) == ["empty.fits", "junk.fits"]
    assert "ignore_missing_simple" not in done.stderr
    assert lines[2].startswith("aposos station: error: no frame could be used")
    report = json.loads((tmp_path / "out" / "reduction.json").read_text())
    assert any("ignore_missing_simple" in f["reason"] for f in report["frames"])


BAD_INPUTS = [
    (["station", "simulate", "--station", PERU, "--catalog", CATALOGUE_NEW, "--start",
      "yesterday", "--minutes", "1", "--out", "x"], ["--start", "yesterday"]),
    (["station", "simulate", "--station", PERU, "--catalog", CATALOGUE_NEW, "--start",
      "2020-10-02T23:00:00", "--minutes", "-1", "--out", "x"], ["--minutes"]),
    (["station", "simulate", "--station", PERU, "--catalog", CATALOGUE_NEW, "--start",
      "2020-10-02T12:00:00", "--minutes", "1", "--out", "x"], ["not dark"]),
    (["station", "status", "--station", "missing.toml"], ["missing.toml"]),
    (["station", "reduce", "x", "--station", CATALOGUE_NEW, "--out", "y"], ["not valid TOML"]),
    (["correlate", "x.tdm", "--catalog", "missing.3le", "--stations", STATIONS], ["missing.3le"]),
    (["correlate", "x.tdm", "--catalog", CATALOGUE_NEW, "--stations", "nowhere"], ["nowhere"]),
    (["correlate", "x.tdm", "--catalog", CATALOGUE_NEW, "--stations", STATIONS, "--model",
      CATALOGUE_NEW], ["not an error model"]),
    (["catalog", "predict", CATALOGUE_NEW, "--site", "1,2,3", "--at", AT, "--limit", "-1"],
     ["--limit", "at least 1"]),
    (["catalog", "predict", CATALOGUE_NEW, "--station", PERU, "--at", "2026-11-22T00:00:00"],
     ["more than 30 days"]),
    (["center", "plan", "--night", "notadate"], ["no center configuration"]),
    (["query", "object", "notanumber"], ["NORAD", "invalid int"]),
]  # fmt: skip


@pytest.mark.parametrize("args, words", BAD_INPUTS, ids=lambda v: " ".join(map(str, v))[:60])
def test_bad_inputs_give_one_line_and_no_traceback(tmp_path, args, words):
    done = aposos(*args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert all(word in last for word in words), last


def test_correlate_previous_snapshot_is_read_or_named(tmp_path):
    """``--previous`` (the catalogue's history) is read like ``--catalog``; a missing one
    is one clear line, before any work."""
    done = aposos("correlate", "x.tdm", "--catalog", CATALOGUE_NEW, "--previous", "gone.3le",
                  "--stations", STATIONS, cwd=tmp_path)  # fmt: skip
    one_clear_line(done, "no such file: gone.3le")
    (tmp_path / "empty.3le").write_text("\n")
    done = aposos("correlate", "x.tdm", "--catalog", CATALOGUE_NEW, "--previous", "empty.3le",
                  "--stations", STATIONS, cwd=tmp_path)  # fmt: skip
    one_clear_line(done, "empty.3le")
