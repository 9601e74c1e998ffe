"""The service's log: one event a line on stderr, as text for people or JSON for machines.

The jobs log through :func:`log_event` with a stable event name (``clearing_run``,
``poll_cycle``, ``energy_derived``, ``settlement_run``, ``catch_up``, ``job_leader``,
``job_failed``) and the event's fields; :class:`JsonFormatter` writes each as one JSON object,
:class:`TextFormatter` as ``time level logger event: message key=value ...``. uvicorn's own
lines (its access log included) go through the same formatter to stderr
(:func:`logging_config`), so stdout carries nothing. A request's path is logged without the
secrets a path can carry (:func:`redact_path`): an invitation link's and any ``token=`` value.

May import the standard library only.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

#: What a secret in a logged path is replaced with.
REDACTED = "REDACTED"
#: The secret segment of an invitation's path, and any ``token`` query value (an invitation
#: link's ``/invitation?token=...``), percent-encoded or not.
_INVITATION_SECRET = re.compile(r"(/invitations/)[^/?#\s]+")
_TOKEN_QUERY = re.compile(r"([?&;]token=)[^&;#\s]*", re.IGNORECASE)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def log_event(
    logger: logging.Logger,
    event: str,
    message: str,
    *,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log ``event`` (a stable name) with ``message`` for people and ``fields`` for machines;
    ``exc_info`` adds the exception being handled.

    Field values are kept as they are (a Decimal stays exact: JSON writes it as a string).
    """
    logger.log(level, message, exc_info=exc_info, extra={"event": event, "fields": fields}, stacklevel=2)


def redact_path(path: str) -> str:
    """``path`` (with its query) without secrets: the segment after ``/invitations/`` and every
    ``token=`` query value become :data:`REDACTED`; the rest is kept, so the line still says
    which page was asked for."""
    path = _INVITATION_SECRET.sub(rf"\g<1>{REDACTED}", path)
    return _TOKEN_QUERY.sub(rf"\g<1>{REDACTED}", path)


def _without_secrets(record: logging.LogRecord) -> logging.LogRecord:
    """An access-log record with its path redacted (a copy: other handlers see the record as it
    came); any other record as it is."""
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, http_version, status = record.args
        if isinstance(path, str) and redact_path(path) != path:
            record = logging.makeLogRecord(record.__dict__)
            record.args = (client, method, redact_path(path), http_version, status)
    return record


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, http_version, status = record.args
        fields.update(client=client, method=method, path=path, http_version=http_version, status=status)
    return fields


def _event(record: logging.LogRecord) -> str:
    event = getattr(record, "event", None)
    if event:
        return str(event)
    if record.name == "uvicorn.access":
        return "http_request"
    if record.name.startswith("uvicorn"):
        return "server"  # uvicorn's start-up and shutdown lines
    return "message"


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A JSON-ready value: exact decimals and times as strings, containers walked."""
    if isinstance(value, Decimal | datetime):
        return str(value) if isinstance(value, Decimal) else value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object: ``time``, ``level``, ``logger``, ``event``, ``message``,
    the event's fields, and ``exception`` (the traceback as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        record = _without_secrets(record)
        document: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": _event(record),
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            document.setdefault(key, _plain(value))
        for key, value in record.__dict__.items():  # other extras (not uvicorn's colour copy)
            if key not in _RECORD_ATTRIBUTES and key not in ("event", "fields", "color_message"):
                document.setdefault(key, _plain(value))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Each record as one line: ``time level logger event: message key=value ...``; a traceback
    is kept on the same line (its line breaks written as ``\\n``)."""

    def format(self, record: logging.LogRecord) -> str:
        record = _without_secrets(record)
        parts = [_time(record), record.levelname, record.name, f"{_event(record)}:", record.getMessage()]
        for key, value in _fields(record).items():
            if record.name != "uvicorn.access":
                parts.append(f"{key}={_text(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line.replace("\n", "\\n")


def _text(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, str) and plain and not any(c.isspace() or c in '"=' for c in plain):
        return plain
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"))


def formatter_class(log_format: LogFormat) -> type[logging.Formatter]:
    """The formatter for ``log_format`` (``text`` or ``json``)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return JsonFormatter if log_format == "json" else TextFormatter


def logging_config(log_format: LogFormat, *, level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the service (given to uvicorn, which applies it in
    every worker): smartbrum's and uvicorn's loggers, access log included, to stderr in
    ``log_format``."""
    formatter = formatter_class(log_format)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"smartbrum": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "smartbrum",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "smartbrum": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            # Libraries' warnings (apscheduler's missed runs, say) in the same format.
            "apscheduler": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
