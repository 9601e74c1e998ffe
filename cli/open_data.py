"""The ``smartbrum open-data`` commands: the market's results as open data (issue 18).

``open-data export DIR --date D`` writes a finished day's results as CSV files with a
Frictionless Data Package descriptor (``datapackage.json``), for a city data portal to harvest,
and prints the paths it wrote, one a line; nothing else goes to stdout.

The database stack is imported inside the commands, so that ``smartbrum clear`` starts without it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli.options import fail

open_data_app = typer.Typer(help="The market's results as open data.", no_args_is_help=True)

DESCRIPTOR = "datapackage.json"


@open_data_app.command("export")
def export(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write the files into (made if missing).")
    ],
    on: Annotated[
        str | None, typer.Option("--date", help="Settlement date, YYYY-MM-DD (default: yesterday).")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(help="The platform's time, ISO 8601 (default: now); the day must be over by it."),
    ] = None,
) -> None:
    """Write a finished day's results per feeder and period (CSV) and its datapackage.json; print
    the paths written, one a line."""
    from sqlmodel import Session

    from cli.options import market_engine, platform_now, settings_or_fail
    from market.errors import MarketError
    from market.intervals import LONDON
    from market.open_results import (
        cells_csv,
        datapackage_descriptor,
        open_results,
        results_file_names,
        totals_csv,
    )

    settings = settings_or_fail()
    moment = platform_now(now, "--now", settings)
    day = _date(on) if on is not None else datetime.now(LONDON).date() - timedelta(days=1)
    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory}: is not a folder")
    with market_engine(settings) as engine, Session(engine) as session:
        try:
            results = open_results(
                session,
                settlement_date=day,
                length_minutes=settings.interval_minutes,
                min_households=settings.open_data_min_households,
                licence=settings.open_data_licence(),
                now=moment,
            )
        except MarketError as error:
            raise fail(f"--{error.field}: {error.reason}" if error.field == "date" else str(error)) from None
    cells_file, totals_file = results_file_names(day)
    files = {
        cells_file: cells_csv(results),
        totals_file: totals_csv(results),
        DESCRIPTOR: json.dumps(datapackage_descriptor(results), indent=2, ensure_ascii=False) + "\n",
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = [_write_whole(directory / name, text) for name, text in files.items()]
    except OSError as error:
        raise fail(f"{error.filename or directory}: cannot write ({error.strerror or error})") from None
    suppressed = sum(1 for cell in results.cells if cell.figures is None)
    print(
        f"{day.isoformat()}: {len(results.cells)} cells, {suppressed} suppressed "
        f"(fewer than {results.min_households} households)",
        file=sys.stderr,
    )
    for path in written:
        print(path)


def _write_whole(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it, so that a harvester never
    reads half a file (the CSV is written as is: its CRLF line ends are the CSV's own)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # published files: mkstemp makes them the owner's alone
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
