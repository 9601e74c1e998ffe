"""smartbrum's settings: the environment (``SMARTBRUM_`` prefix) over an optional TOML file.

The file is named by ``SMARTBRUM_CONFIG`` (keys as below, without the prefix). With nothing set,
smartbrum runs on the SQLite default, ``var/smartbrum.db`` under the working directory. Only
:mod:`api` reads settings; the layers below take explicit values (:class:`market.rules.MarketRules`).
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from market.rules import MarketRules

DEFAULT_DATABASE_URL = "sqlite:///var/smartbrum.db"


class Settings(BaseSettings):
    """Every setting, with its default."""

    model_config = SettingsConfigDict(env_prefix="SMARTBRUM_", extra="forbid", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the market database.")
    interval_minutes: int = Field(30, description="Settlement period length: 15, 30 or 60.")
    gate_closure_minutes: int = Field(
        5, ge=0, le=1440, description="Orders freeze this long before a period."
    )
    min_quantity_kwh: Decimal = Field(Decimal("0.001"), gt=0)
    max_quantity_kwh: Decimal = Field(Decimal("100"), gt=0)
    min_price_p_per_kwh: Decimal = Decimal("-100")
    max_price_p_per_kwh: Decimal = Decimal("1000")
    max_open_orders: int = Field(10, ge=1)

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


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
