"""The ``smartbrum`` command line.

Every command turns bad input into a one-line message on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import gc
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.clearing_files import FileFormatError, clear_files
from cli.invitations import participant_invite
from cli.market import db_app, intervals, market_app
from cli.meter_data import meter_data_app
from cli.meters import meter_app
from cli.network import network_app, tariff_app
from cli.open_data import open_data_app
from cli.options import fail
from cli.participants import participant_app, token_app
from cli.scenarios import SCENARIOS, demo, scenario_app
from cli.serve import serve
from cli.settlement import settle_command, statement_command
from cli.strategies import strategy_app
from optimiser import ClearingResult, SolverError

app = typer.Typer(
    name="smartbrum",
    help="Smart-energy trading and metering for a city's neighbourhoods.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    # Help paragraphs reflow to the terminal (rich mode keeps the docstrings' line breaks).
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"smartbrum {version('smartbrum')}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Smart-energy trading and metering for a city's neighbourhoods."""


app.add_typer(db_app, name="db")
app.add_typer(market_app, name="market")
app.add_typer(meter_app, name="meter")
app.add_typer(meter_data_app, name="meter-data")
app.command()(intervals)
app.command("settle")(settle_command)
app.command("serve")(serve)
app.add_typer(participant_app, name="participant")
participant_app.command("invite")(participant_invite)  # the web app's invitations (issue 16)
app.add_typer(token_app, name="token")
app.add_typer(strategy_app, name="strategy")
app.command("statement")(statement_command)
app.command("demo")(demo)
app.add_typer(scenario_app, name="scenario")
app.add_typer(network_app, name="network")
app.add_typer(tariff_app, name="tariff")
app.add_typer(open_data_app, name="open-data")
#: Above this much JSON the book was large enough that interpreter teardown is worth skipping.
_HARD_EXIT_BYTES = 1_000_000
#: Set by :func:`main`: the command owns the process (not called from a test or another program).
_standalone = False


def _price(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number", param_hint=name) from None
    if not price.is_finite():
        raise typer.BadParameter(f"{value!r} is not a finite number", param_hint=name)
    return price


@app.command()
def clear(
    orders: Annotated[Path, typer.Argument(help="Order book CSV for one interval.")],
    network: Annotated[
        Path | None, typer.Option(help="Network tree TOML; without it every order trades at one node.")
    ] = None,
    import_price: Annotated[
        str | None, typer.Option(help="Backstop import tariff, p/kWh (default: the network file's, or 24.5).")
    ] = None,
    export_price: Annotated[
        str | None, typer.Option(help="Backstop export tariff, p/kWh (default: the network file's, or 4.1).")
    ] = None,
) -> None:
    """Clear one interval's order book and print the result as JSON."""
    import_p = _price(import_price, "--import-price")
    export_p = _price(export_price, "--export-price")
    # A city-wide book is millions of objects that all live until the end: collecting them for
    # cycles that do not exist costs seconds, and so does tearing them down at exit.
    gc.disable()
    try:
        _, text = clear_files(orders, network=network, import_price=import_p, export_price=export_p)
    except (FileFormatError, SolverError) as error:
        raise fail(str(error)) from None
    finally:
        gc.enable()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if _standalone and len(text) > _HARD_EXIT_BYTES:
        os._exit(0)  # the answer is written and flushed; skip freeing what the OS frees anyway


@app.command("clear-sample")
def clear_sample(
    book: Annotated[Path, typer.Option(help="Order book CSV.")] = SCENARIOS / "sample-book.csv",
    network: Annotated[Path, typer.Option(help="Network TOML.")] = SCENARIOS / "sample-network.toml",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON that clear prints.")] = False,
) -> None:
    """Clear an order book file (the sample book in scenarios/ by default) and show the result as a table."""
    try:
        result, text = clear_files(book, network=network)
    except (FileFormatError, SolverError) as error:
        raise fail(str(error)) from None
    if as_json:
        sys.stdout.write(text + "\n")
        return
    _show(result, book, network)


def _show(result: ClearingResult, book: Path, network: Path) -> None:
    console = Console()
    console.print(f"[bold]smartbrum[/] cleared [cyan]{book.name}[/] on [cyan]{network.name}[/]")
    prices = Table("node", "price p/kWh", "supporting range", "net flow in kWh", title="Nodes")
    for node, price in result.node_prices_p_per_kwh.items():
        low, high = result.price_ranges_p_per_kwh[node]
        flow = result.flows_wh.get(node)
        prices.add_row(
            node,
            f"{price:.4f}",
            f"{low} .. {high}" if low != high else "unique",
            "-" if flow is None else f"{flow / 1000:.3f}",
        )
    console.print(prices)
    bought = int(result.accepted_wh[result.accepted_wh > 0].sum())
    filled = int((result.accepted_wh > 0).sum())
    summary = Table.grid(padding=(0, 2))
    summary.add_row("orders", f"{len(result.order_ids)} ({filled} filled in whole or part)")
    summary.add_row("energy accepted", f"{bought / 1000:.3f} kWh (both sides)")
    summary.add_row("backstop import", f"{result.grid_import_kwh} kWh")
    summary.add_row("backstop export", f"{result.grid_export_kwh} kWh")
    summary.add_row("welfare", f"{result.welfare_p:.2f} p")
    stats = result.stats
    summary.add_row(
        "model",
        f"{stats.price_levels} price levels, {stats.variables} variables, {stats.constraints} balances, "
        f"{stats.rounds} round(s), {stats.seconds.get('total', 0.0) * 1000:.0f} ms",
    )
    console.print(summary)


def main() -> None:
    """Entry point of the ``smartbrum`` command."""
    global _standalone
    _standalone = True
    app()
