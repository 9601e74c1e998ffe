"""The ``smartbrum meter-data`` commands: half-hourly meter data from the national data service's
files (:mod:`market.meter_files`).

``meter-data import FILE`` prints its summary as JSON on stdout and exits with:

- 0: every row was good and is stored (or was stored already);
- 1: some rows were bad and nothing was stored (the summary lists them);
- 3: with ``--skip-bad``, some rows were bad: the good ones are stored, the bad ones listed;
- 2: the file could not be read at all (missing, too large, not UTF-8, a wrong header), or the
  settings or database are at fault: a one-line message on stderr and nothing on stdout.

The database stack is imported inside the commands, so that ``smartbrum clear`` starts without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.options import fail

meter_data_app = typer.Typer(
    help="Half-hourly meter data from the national data service's files.", no_args_is_help=True
)

#: Exit status when rows were bad and nothing was stored, and with --skip-bad when some were.
EXIT_BAD_ROWS, EXIT_SKIPPED_ROWS = 1, 3


@meter_data_app.command("import")
def meter_data_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header: mpan,settlement_date,settlement_period,import_kwh,export_kwh,quality."
        ),
    ],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Store the good rows even if some are bad (exit 3 if any are).")
    ] = False,
    now: Annotated[
        str | None, typer.Option(help="The platform's time, ISO 8601 (default: now); stamps the revisions.")
    ] = None,
) -> None:
    """Import a half-hourly meter data file: every row checked, all stored or none (see --skip-bad).

    Prints a JSON summary: rows read, stored (new and revised), unchanged, estimates replaced by
    actuals, bad rows with their row number (the header is row 1), column and reason.
    """
    from cli.options import market_engine, platform_now, settings_or_fail
    from market.meter_files import MAX_FILE_BYTES, MeterFileError, decode_meter_file, import_meter_file

    settings = settings_or_fail()
    moment = platform_now(now, "--now", settings)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise fail(f"{file}: file is larger than {MAX_FILE_BYTES} bytes; split it")
        text = decode_meter_file(file.read_bytes())
    except OSError as error:
        raise fail(f"{file}: cannot read it ({error.strerror or type(error).__name__})") from None
    except MeterFileError as error:
        raise fail(f"{file}: {error}") from None
    with market_engine(settings) as engine:
        try:
            summary = import_meter_file(
                engine, text, now=moment, skip_bad=skip_bad, interval_minutes=settings.interval_minutes
            )
        except MeterFileError as error:
            raise fail(f"{file}: {error}") from None
    sys.stdout.write(json.dumps(summary.as_dict(), indent=2) + "\n")
    sys.stdout.flush()
    if summary.bad:
        first = summary.problems[0]
        stored = (
            f"the good rows are stored ({summary.stored} new or revised)"
            if skip_bad
            else "nothing is stored (--skip-bad stores the good rows)"
        )
        print(
            f"smartbrum: {file}: {summary.bad} bad rows (first: row {first.row}, {first.field}: "
            f"{first.reason}); {stored}",
            file=sys.stderr,
        )
        raise typer.Exit(code=EXIT_SKIPPED_ROWS if skip_bad else EXIT_BAD_ROWS)
