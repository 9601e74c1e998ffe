"""smartbrum's settings: the environment (``SMARTBRUM_`` prefix) over an optional TOML file.

The file is named by ``SMARTBRUM_CONFIG`` (keys as below, without the prefix). With nothing set,
smartbrum runs on the SQLite default, ``var/smartbrum.db`` under the working directory. Only
:mod:`api` reads settings; the layers below take explicit values (:class:`market.rules.MarketRules`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from market.accounts import AccountPolicy
from market.open_results import MIN_HOUSEHOLDS_FLOOR, OPEN_GOVERNMENT_LICENCE, Licence
from market.rules import MarketRules
from market.settlement import SettlementConfig
from metering.polling import PollSettings

DEFAULT_DATABASE_URL = "sqlite:///var/smartbrum.db"


class Settings(BaseSettings):
    """Every setting, with its default."""

    model_config = SettingsConfigDict(env_prefix="SMARTBRUM_", extra="forbid", frozen=True)

    #: SQLAlchemy URL of the market database.
    database_url: str = DEFAULT_DATABASE_URL
    #: Settlement period length: 15, 30 or 60 minutes.
    interval_minutes: int = 30
    #: Orders for a period freeze this many minutes before it starts.
    gate_closure_minutes: int = Field(default=5, ge=0, le=1440)
    #: Bounds on one order (inclusive).
    min_quantity_kwh: Decimal = Field(default=Decimal("0.001"), gt=0)
    max_quantity_kwh: Decimal = Field(default=Decimal("100"), gt=0)
    min_price_p_per_kwh: Decimal = Decimal("-100")
    max_price_p_per_kwh: Decimal = Decimal("1000")
    #: Most open orders one household may hold for one period.
    max_open_orders: int = Field(default=10, ge=1)
    #: Threads a worker runs requests' database work on, and connections it keeps open for them.
    worker_threads: int = Field(default=16, ge=1, le=200)
    #: Seconds between meter polling cycles.
    poll_seconds: float = Field(default=60.0, gt=0)
    #: Longest wait for one meter's answer, and extra attempts after a failure.
    meter_timeout_s: float = Field(default=1.0, gt=0)
    meter_retries: int = Field(default=1, ge=0)
    #: Pause before a request to another unit id on the same bus (some RS485 meters need one).
    meter_unit_pause_s: float = Field(default=0.0, ge=0)
    #: Failures in a row after which a meter is skipped, and for how many seconds.
    meter_breaker_failures: int = Field(default=3, ge=1)
    meter_breaker_cooldown_s: float = Field(default=300.0, ge=0)
    #: A folder of extra register maps (one TOML file per meter model).
    meter_maps_dir: Path | None = None
    #: Minutes after a period ends before its meter energy is derived (late polls arrive).
    meter_data_delay_minutes: int = Field(default=2, ge=0)
    #: VAT on what households pay (5% on domestic energy in the UK).
    vat_rate: Decimal = Field(default=Decimal("0.05"), ge=0, le=1)
    #: Platform fee per kWh traded, charged to each side of a trade (p/kWh).
    platform_fee_p_per_kwh: Decimal = Field(default=Decimal(0), ge=0)
    #: Minutes after a period ends before its initial settlement run (its meter data is due).
    settlement_delay_minutes: int = Field(default=10, ge=0)
    #: How often (seconds) a worker asks the database whether a clearing run, tariff or network
    #: version has been stored since it cached the public price feed (``/open/v1/prices``); a
    #: feed is at most this stale after a clearing. 0: on every request.
    open_feed_check_seconds: float = Field(default=1.0, ge=0, le=60)
    #: The largest request body the API reads (bytes): a batch of 500 orders is about 60 kB.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: The largest half-hourly meter data file ``POST /v1/meter-data`` reads (bytes): 100,000
    #: rows are about 5 MB, so 16 MiB takes some 300,000 (a day of 6,000 households).
    max_meter_data_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=32 * 1024 * 1024)
    #: Failed authentications one client may make in a window before it is refused (429).
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    #: The platform runs on a simulated clock (a demonstration or a test): commands may then be
    #: given a ``--now`` ahead of the real clock. Off, nothing runs ahead of the real clock.
    simulated_clock: bool = False

    # --- Operating the service (issue 15 C): logs and metrics ---
    #: The log's format on stderr: ``text`` (one line an event, for people) or ``json`` (one
    #: object a line). ``smartbrum serve --log-format`` overrides it.
    log_format: Literal["text", "json"] = "text"
    #: Serve ``/metrics`` without a token (for a scraper on a private network); otherwise it
    #: needs the operator's.
    metrics_public: bool = False

    # --- the web app (issue 16): links, sessions and sign-in throttling ---
    #: The address people reach the service at: invitation links are built on it, and session
    #: cookies are marked Secure when it is https.
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    #: Hours an invitation link stays usable.
    invitation_hours: int = Field(default=72, ge=1, le=24 * 30)
    #: A web session ends after this many minutes without a request, or this many hours after it began.
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    #: Failed sign-ins of one name before each further attempt waits (1 s, 2 s, 4 s...), and that
    #: lock it; failures from one client address that lock the client; how long a lock lasts.
    sign_in_throttle_after: int = Field(default=3, ge=1)
    sign_in_lock_after: int = Field(default=10, ge=1)
    sign_in_client_lock_after: int = Field(default=50, ge=1)
    sign_in_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)

    # --- open data (issue 18): the market's results for the city ---
    #: A feeder's figures for a period are published only where at least this many households
    #: contributed. Never below 3: with 2, either household could subtract its own figures from
    #: the cell's and read its neighbour's (market.open_results.MIN_HOUSEHOLDS_FLOOR).
    open_data_min_households: int = Field(default=5, ge=MIN_HOUSEHOLDS_FLOOR, le=1_000_000)
    #: The licence the open results are published under: its Open Definition id, title and URL.
    open_data_licence_name: str = Field(default=OPEN_GOVERNMENT_LICENCE.name, min_length=1, max_length=100)
    open_data_licence_title: str = Field(default=OPEN_GOVERNMENT_LICENCE.title, min_length=1, max_length=200)
    open_data_licence_path: str = Field(default=OPEN_GOVERNMENT_LICENCE.path, pattern=r"^https?://\S+$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SMARTBRUM_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"SMARTBRUM_CONFIG: {config_file} is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def meter_map_dirs(self) -> tuple[Path, ...]:
        """The user's register-map folders (searched before the shipped maps)."""
        return () if self.meter_maps_dir is None else (self.meter_maps_dir,)

    def poll_settings(self) -> PollSettings:
        """How the poller treats each meter, from these settings."""
        return PollSettings(
            timeout_s=self.meter_timeout_s,
            retries=self.meter_retries,
            unit_switch_pause_s=self.meter_unit_pause_s,
            breaker_failures=self.meter_breaker_failures,
            breaker_cooldown_s=self.meter_breaker_cooldown_s,
        )

    def settlement_config(self) -> SettlementConfig:
        """VAT and the platform fee, from these settings."""
        return SettlementConfig(
            vat_rate=self.vat_rate,
            platform_fee_p_per_kwh=self.platform_fee_p_per_kwh,
            meter_data_delay=timedelta(minutes=self.meter_data_delay_minutes),
        )

    def open_data_licence(self) -> Licence:
        """The licence the open results carry, from these settings."""
        return Licence(
            name=self.open_data_licence_name,
            title=self.open_data_licence_title,
            path=self.open_data_licence_path,
        )

    def market_rules(self) -> MarketRules:
        """The market's rules from these settings."""
        return MarketRules(
            interval_minutes=self.interval_minutes,
            gate_closure_minutes=self.gate_closure_minutes,
            min_quantity_kwh=self.min_quantity_kwh,
            max_quantity_kwh=self.max_quantity_kwh,
            min_price_p_per_kwh=self.min_price_p_per_kwh,
            max_price_p_per_kwh=self.max_price_p_per_kwh,
            max_open_orders=self.max_open_orders,
        )

    def account_policy(self) -> AccountPolicy:
        """Invitations, sessions and sign-in throttling, from these settings (the web app)."""
        return AccountPolicy(
            invitation_valid=timedelta(hours=self.invitation_hours),
            session_idle=timedelta(minutes=self.session_idle_minutes),
            session_absolute=timedelta(hours=self.session_absolute_hours),
            throttle_after=self.sign_in_throttle_after,
            lock_after=self.sign_in_lock_after,
            client_lock_after=self.sign_in_client_lock_after,
            lock_for=timedelta(minutes=self.sign_in_lock_minutes),
        )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


# --- issue 15 B (cli): a settings mistake in one line, naming where it was made ----------------


def describe_settings_error(error: ValueError) -> str:
    """One line for a settings mistake: the variable or the file and key, the value, the reason.

    ``SMARTBRUM_INTERVAL_MINUTES: 'half' is not valid: Input should be a valid integer``, or
    ``/etc/smartbrum.toml: gate_closure_minutes: ...``; never pydantic's multi-line report.
    """
    import tomllib

    from pydantic import ValidationError

    config_file = os.environ.get("SMARTBRUM_CONFIG")
    if isinstance(error, tomllib.TOMLDecodeError):
        return f"{config_file}: is not valid TOML ({error})"
    if not isinstance(error, ValidationError):
        return " ".join(str(error).split())
    problems = error.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "settings"
    variable = f"SMARTBRUM_{key.upper()}"
    environment = {name.upper(): value for name, value in os.environ.items()}
    if variable in environment:
        where, value = variable, environment[variable]
    elif config_file:
        where, value = f"{config_file}: {key}", first.get("input")
    else:
        where, value = key, first.get("input")
    reason = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"{where}: is not a setting (see README.md, Configuration)"
    else:
        message = f"{where}: {value!r} is not valid: {reason}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return message
