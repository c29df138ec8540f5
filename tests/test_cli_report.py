"""`jupyter timeback report`: time per activity, run and local day; completions; HTML chart."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from timeback_jupyter.cli.chart import ACTIVE_COLOR
from timeback_jupyter.cli.daily import daily_rows, split_by_day
from timeback_jupyter.cli.records import read_records
from timeback_jupyter.model import Window, new_run_id
from timeback_jupyter.store import Store

from .test_cli import LESSON, QUIZ, assert_one_line_error, cli, jupyter, make_env, record_run

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch)


def at(*args: int, tz=PARIS) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def quiz_around_midnight(store_path: Path) -> str:
    """A quiz run from 23:59:50 to 00:00:20 Paris time, completed after midnight."""
    with Store(store_path) as store:
        return record_run(
            store,
            QUIZ,
            [
                (at(2026, 1, 15, 23, 59, 50), at(2026, 1, 16, 0, 0, 5), 12.0, 3.0),
                (at(2026, 1, 16, 0, 0, 5), at(2026, 1, 16, 0, 0, 20), 15.0, 0.0),
            ],
            completion={"xp_earned": 0.4, "at": at(2026, 1, 16, 0, 0, 21),
                        "total_questions": 4, "correct_questions": 3},
        )  # fmt: skip


def table_rows(out: str) -> list[list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["ACTIVITY", "RUN", "ATTEMPT"]
    return [line.split() for line in lines[1:] if line.strip() and "activit" not in line]


def test_a_window_across_midnight_is_split_in_proportion():
    run_id = new_run_id()
    window = Window(run_id, at(2026, 1, 15, 23, 59, 50), at(2026, 1, 16, 0, 0, 5), 12.0, 3.0)
    parts = split_by_day(window, PARIS)
    assert [p[0] for p in parts] == [date(2026, 1, 15), date(2026, 1, 16)]
    assert parts[0][1] == pytest.approx(12.0 * 10 / 15)
    assert parts[1][1] == pytest.approx(12.0 * 5 / 15)
    assert sum(p[2] for p in parts) == pytest.approx(3.0)
    # The same window is one day in a zone where it does not cross midnight.
    assert len(split_by_day(window, ZoneInfo("America/New_York"))) == 1


def test_report_per_activity_run_and_local_day_with_completion(env, capsys):
    run_id = quiz_around_midnight(env.store)
    result = cli(capsys, "report", "--timezone=Europe/Paris")
    assert result.code == 0, result
    rows = table_rows(result.out)
    assert rows[0] == ["fractions-quiz", run_id[:8], "1", "completed", "2026-01-15",
                       "0:00:08", "0:00:02"]  # fmt: skip
    assert rows[1][:7] == ["fractions-quiz", run_id[:8], "1", "completed", "2026-01-16",
                           "0:00:19", "0:00:01"]  # fmt: skip
    assert " ".join(rows[1][7:]) == "\u2713 0.4 xp, 3/4 correct"
    assert "1 activity, 1 run (1 completed); active 0:00:27, inactive 0:00:03" in result.out
    assert "days in Europe/Paris" in result.out

    # In New York the whole run falls on the 15th.
    rows = table_rows(cli(capsys, "report", "--timezone=America/New_York").out)
    assert [r[4] for r in rows] == ["2026-01-15"]
    assert rows[0][5:7] == ["0:00:27", "0:00:03"]


def test_report_uses_TZ_by_default_in_the_real_command(env):
    run_id = quiz_around_midnight(env.store)
    result = jupyter(env, "report", extra={"TZ": "Asia/Tokyo"})
    assert result.code == 0, result
    rows = table_rows(result.out)
    assert [(r[1], r[4]) for r in rows] == [(run_id[:8], "2026-01-16")]  # 07:59 in Tokyo
    assert "days in Asia/Tokyo (local)" in result.out


def test_report_lists_every_run_even_without_time_and_filters_by_activity(env, capsys):
    quiz_around_midnight(env.store)
    with Store(env.store) as store:
        lesson = record_run(store, LESSON, [], started=at(2026, 1, 20, 9, 0))
    result = cli(capsys, "report", "--timezone=Europe/Paris")
    rows = table_rows(result.out)
    assert [r[0] for r in rows] == ["fractions-lesson", "fractions-quiz", "fractions-quiz"]
    assert rows[0] == ["fractions-lesson", lesson[:8], "1", "active", "2026-01-20",
                       "0:00:00", "0:00:00"]  # fmt: skip
    only = table_rows(cli(capsys, "report", "--activity=fractions-lesson").out)
    assert [r[0] for r in only] == ["fractions-lesson"]
    none = cli(capsys, "report", "--activity=nope")
    assert none.code == 0 and "no runs recorded for activity 'nope' yet" in none.out


def test_daily_rows_from_the_store_match_its_totals(env):
    quiz_around_midnight(env.store)
    with Store(env.store) as store:
        records = read_records(store)
        [run] = store.list_runs()
    rows = daily_rows(records, PARIS)
    assert sum(r.active for r in rows) == pytest.approx(run.active_seconds)
    assert sum(r.inactive for r in rows) == pytest.approx(run.inactive_seconds)
    assert [r.completion is not None for r in rows] == [False, True]


def test_report_writes_a_self_contained_html_chart(env, capsys):
    quiz_around_midnight(env.store)
    page = env.tmp / "report.html"
    result = cli(capsys, "report", "--timezone=Europe/Paris", f"--html={page}")
    assert result.code == 0, result
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 1 and "Fractions quiz" in html
    assert len(re.findall(f'<rect [^>]*fill="{ACTIVE_COLOR}"', html)) == 2  # a bar per day
    assert html.count("\u2713</text>") == 1  # the completion mark, on the 16th
    assert "2026-01-15: active 0:00:08, inactive 0:00:02" in html
    assert "0.4 xp, 3/4 correct" in html
    for external in ("<script", "src=", "href=", "@import", "url("):
        assert external not in html


def test_report_html_renders_in_chromium(env, capsys):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    quiz_around_midnight(env.store)
    page = env.tmp / "report.html"
    assert cli(capsys, "report", "--timezone=Europe/Paris", f"--html={page}").code == 0
    shot = env.tmp / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=900,700", f"--user-data-dir={env.tmp / 'chromium'}", page.as_uri()],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert shot.exists(), "chromium wrote no screenshot"
    green = tuple(int(ACTIVE_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    pixels = png_pixels(shot.read_bytes())
    assert sum(1 for p in pixels if p[:3] == green) > 200, "no active bars on the screenshot"


def png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """The pixels of an 8-bit RGB/RGBA, non-interlaced PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return [tuple(row[x * bpp : (x + 1) * bpp]) for row in rows for x in range(width)]


def test_report_errors(env, capsys):
    assert_one_line_error(cli(capsys, "report"), "no store yet at", str(env.store))
    assert not env.store.exists()
    quiz_around_midnight(env.store)
    assert_one_line_error(
        cli(capsys, "report", "--timezone=Mars/Olympus_Mons"), "not a known time zone", code=2
    )
    missing = env.tmp / "nowhere" / "report.html"
    assert_one_line_error(cli(capsys, "report", f"--html={missing}"), "cannot write", "nowhere")
    assert list(env.tmp.glob("**/.report.html.*")) == []  # no temp file left behind
