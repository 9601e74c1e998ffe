"""The command line as a whole: --version, shell completion, help that renders and says true
defaults, gate closures in `intervals`, and settings mistakes in one line (issue 15, B)."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("SMARTBRUM_DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    monkeypatch.setenv("COLUMNS", "80")

    def invoke(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield invoke
    get_settings.cache_clear()


def every_command() -> list[list[str]]:
    def walk(command, path: list[str]) -> list[list[str]]:  # type: ignore[no-untyped-def]
        found = [path]
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


def test_version(run):
    result = run("--version")
    assert (result.exit_code, result.stdout) == (0, f"smartbrum {version('smartbrum')}\n")


def test_shell_completion_is_on(run, monkeypatch):
    # Typer takes the shell from the process tree (shellingham) unless its own tests' switch says
    # not to: then the shell is the one named, whatever shell runs the suite (under `sh` it was
    # "Shell sh not supported").
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = run("--show-completion", "bash")
    assert result.exit_code == 0, result.output
    assert "_SMARTBRUM_COMPLETE" in result.stdout


@pytest.mark.parametrize("path", every_command(), ids=lambda path: " ".join(path) or "smartbrum")
def test_every_commands_help_renders(run, path):
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "``" not in result.stdout  # reStructuredText markup would show raw
    assert ":func:" not in result.stdout
    assert ":mod:" not in result.stdout


def test_help_says_true_defaults(run):
    shown = " ".join(run("scenario", "run", "--help").stdout.split())
    assert "omit for day-ahead" not in shown  # omitting it gives 6 periods ahead, not day-ahead
    assert re.search(r"--bid-ahead .*rolling .*\[default: 6\]", shown)
    poll = " ".join(run("meter", "poll", "--help").stdout.split())
    assert "With --shard I/N several processes" in poll


def test_intervals_show_each_gate_closure(run, monkeypatch):
    monkeypatch.setenv("SMARTBRUM_GATE_CLOSURE_MINUTES", "15")
    periods = json.loads(run("intervals", "--date", "2026-11-21", "--json").stdout)
    assert (periods[0]["start_utc"], periods[0]["gate_closure_utc"]) == (
        "2026-11-21T00:00:00Z",
        "2026-11-20T23:45:00Z",
    )
    table = run("intervals", "--date", "2026-11-21")
    assert "gate closes" in table.stdout
    assert re.search(r"2026-11-21 00:00\s+00:30\s+23:45", table.stdout)
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


@pytest.mark.parametrize(
    ("variable", "value", "config", "message"),
    [
        (
            "SMARTBRUM_INTERVAL_MINUTES",
            "half",
            None,
            "settings: SMARTBRUM_INTERVAL_MINUTES: 'half' is not valid: Input should be a valid integer",
        ),
        (
            None,
            None,
            "gate_closure_minutes = -3\n",
            "{file}: gate_closure_minutes: -3 is not valid: Input should be",
        ),
        (None, None, "colour = 3\n", "smartbrum: settings: {file}: colour: is not a setting"),
        (
            None,
            None,
            "colour = \n",
            "smartbrum: settings: {file}: is not valid TOML (Invalid value (at line 1",
        ),
    ],
)
def test_a_settings_mistake_is_one_line_naming_where(
    run, monkeypatch, tmp_path, variable, value, config, message
):
    file = tmp_path / "smartbrum.toml"
    if variable is not None:
        monkeypatch.setenv(variable, value)
    if config is not None:
        file.write_text(config, encoding="utf-8")
        monkeypatch.setenv("SMARTBRUM_CONFIG", str(file))
    result = run("participant", "list")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message.format(file=file) in result.stderr
    assert "pydantic" not in result.stderr
    assert "validation error" not in result.stderr


def test_scenario_run_json_is_the_summary(tmp_path):
    """The whole run, as a user runs it, but short: stdout is one JSON object."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("smartbrum")),
            "scenario",
            "run",
            str(root / "scenarios" / "birmingham-street.toml"),
            "--households",
            "2",
            "--day-seconds",
            "4",
            "--database",
            str(tmp_path / "run.db"),
            "--report",
            str(tmp_path / "report"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["scenario"] == "birmingham-street"
    assert summary["households"] == "2"
    assert summary["intervals cleared"].startswith("48 of 48")
