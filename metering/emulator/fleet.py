"""Many emulated gateways and meters described from a few numbers (:class:`MeterFleet`), and
:func:`serve_fleet` to run them until stopped: for the CLI, the demo and benchmarks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from metering.emulator.gateway import Gateway
from metering.emulator.meters import MAX_UNIT_ID, SIMULATED_MODELS, SimulatedMeter
from metering.emulator.profiles import MeterProfile, Profile
from metering.polling import utc_now


async def serve_fleet(
    gateways: Sequence[Gateway],
    *,
    ready: Callable[[Sequence[Gateway]], object] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run gateways until ``stop`` is set (or the task is cancelled), then stop them all.

    Parameters
    ----------
    gateways : sequence of Gateway
        Started together; if one cannot start, those started are stopped and the error raised.
    ready : callable, optional
        Called with the gateways once all listen (their ports are then known).
    stop : asyncio.Event, optional
        Set it to stop serving; without it, serve until cancelled.
    """
    try:
        await asyncio.gather(*(gateway.start() for gateway in gateways))
        if ready is not None:
            ready(gateways)
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        await asyncio.gather(*(gateway.stop() for gateway in gateways), return_exceptions=True)


@dataclass(frozen=True)
class MeterSpec:
    """One simulated meter of a fleet: its name, unit ID, model and profile."""

    meter_id: str
    unit_id: int
    model: str
    profile: Profile


@dataclass(frozen=True)
class GatewaySpec:
    """One simulated gateway of a fleet: where it listens and the meters behind it."""

    host: str
    port: int
    framer: str
    meters: tuple[MeterSpec, ...]


@dataclass(frozen=True)
class MeterFleet:
    """A fleet of simulated gateways and meters, as data; :meth:`build_gateways` brings it to life.

    Attributes
    ----------
    gateways : tuple of GatewaySpec
    """

    gateways: tuple[GatewaySpec, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        *,
        gateways: int = 1,
        meters_per_gateway: int = 10,
        models: Sequence[str] = ("sdm630",),
        host: str = "127.0.0.1",
        first_port: int = 0,
        framer: str = "socket",
        seed: int = 0,
        pv_share: float = 0.3,
        pv_peak_w: float = 3000.0,
        commissioned_at: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    ) -> MeterFleet:
        """A fleet from a few numbers: meters take ``models`` in turn, unit IDs from 1.

        Parameters
        ----------
        gateways : int
            How many gateways (ports).
        meters_per_gateway : int
            Meters behind each, 1 to 255.
        models : sequence of str
            Models assigned round-robin (:data:`SIMULATED_MODELS`).
        host : str
            Where every gateway listens.
        first_port : int
            Gateway ``g`` listens on ``first_port + g``; 0 gives every gateway a free port.
        framer : str
            ``"socket"`` or ``"rtu"``, for every gateway.
        seed : int
            Seeds every meter's profile (each meter gets its own seed from it) and who has PV.
        pv_share : float
            Fraction of meters with PV (0 to 1).
        pv_peak_w : float
            PV peak of those that have it.
        commissioned_at : datetime
            When every meter's counters started (each starts from a seeded reading).
        """
        if gateways < 1 or not 1 <= meters_per_gateway <= MAX_UNIT_ID:
            raise ValueError(f"need gateways >= 1 and 1 <= meters_per_gateway <= {MAX_UNIT_ID}")
        if not models:
            raise ValueError("give at least one model")
        if not 0 <= pv_share <= 1:
            raise ValueError(f"pv_share must be 0 to 1, got {pv_share}")
        for model in models:
            if model not in SIMULATED_MODELS:
                raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SIMULATED_MODELS)}")
        rng = np.random.default_rng([seed, 3])
        total = gateways * meters_per_gateway
        has_pv = rng.random(total) < pv_share
        peaks = rng.uniform(1500.0, 5000.0, total)
        starts = rng.uniform(0.0, 20_000.0, total)
        specs: list[GatewaySpec] = []
        for g in range(gateways):
            meters = []
            for u in range(meters_per_gateway):
                i = g * meters_per_gateway + u
                profile = MeterProfile(
                    seed=seed * 1_000_003 + i,
                    peak_load_w=float(peaks[i]),
                    pv_peak_w=pv_peak_w if has_pv[i] else 0.0,
                    commissioned_at=commissioned_at,
                    import_kwh_at_commissioning=round(float(starts[i]), 1),
                )
                meters.append(
                    MeterSpec(
                        meter_id=f"sim-{g + 1:02d}-{u + 1:03d}",
                        unit_id=u + 1,
                        model=models[i % len(models)],
                        profile=profile,
                    )
                )
            port = first_port + g if first_port else 0
            specs.append(GatewaySpec(host=host, port=port, framer=framer, meters=tuple(meters)))
        return cls(gateways=tuple(specs))

    @property
    def meter_count(self) -> int:
        """How many meters the fleet has."""
        return sum(len(gateway.meters) for gateway in self.gateways)

    def build_gateways(self, *, clock: Callable[[], datetime] = utc_now) -> list[Gateway]:
        """Live (not yet started) gateways and meters for this fleet, all on ``clock``."""
        return [
            Gateway(
                spec.host,
                spec.port,
                [
                    SimulatedMeter(m.unit_id, m.model, m.profile, meter_id=m.meter_id, clock=clock)
                    for m in spec.meters
                ],
                framer=spec.framer,
            )
            for spec in self.gateways
        ]
