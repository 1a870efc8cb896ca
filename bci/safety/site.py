"""Site limits: a lab's own ceilings, at or below the hard ones, for every session it runs.

A site file is TOML with one table per modality and any of the keys of :data:`SITE_KEYS`::

    # /etc/neuroloop/site-limits.toml
    [tms]
    max_amplitude = 80        # %MSO
    max_daily_pulses = 1800

    [tdcs]
    max_amplitude = 2.0       # mA
    max_daily_s = 1200

Its path comes from ``$NEUROLOOP_SITE_LIMITS``, else the system-wide
``/etc/neuroloop/site-limits.toml`` when that exists; ``NEUROLOOP_SITE_LIMITS=none`` means no
site file (hard ceilings only). A value above the hard ceiling is refused, naming the file,
table, key, value and ceiling. The limits in force are the stricter of the hard ceiling, the
site limit and the protocol's ``[stimulator.limits]``: a protocol may only go lower, and a
protocol limit left out takes the site's.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from bci.safety.ceilings import HARD_CEILINGS

if TYPE_CHECKING:
    from bci.protocol.stimulation import StimulatorSection

SITE_LIMITS_ENV = "NEUROLOOP_SITE_LIMITS"
"""Environment variable naming the site file (``none``: no site file)."""
SYSTEM_SITE_LIMITS = Path("/etc/neuroloop/site-limits.toml")
"""The system-wide site file, used when it exists and ``$NEUROLOOP_SITE_LIMITS`` is unset."""
NO_SITE_FILE = "none"
"""``$NEUROLOOP_SITE_LIMITS`` value for hard ceilings only (the system-wide file unread)."""

SITE_KEYS = MappingProxyType(
    {
        "max_amplitude": "",  # the modality's unit (mA, %MSO)
        "max_slew_per_s": "/s",
        "max_session_s": "s",
        "max_charge_mc": "mC",
        "max_pulses": "pulses",
        "max_daily_s": "s",
        "max_daily_charge_mc": "mC",
        "max_daily_pulses": "pulses",
    }
)
"""Keys of a site table and their units (``max_pulses``: per session; ``max_daily_*``: per
participant over any rolling 24 h)."""

_COUNTS = ("max_pulses", "max_daily_pulses")


def unit_of(modality: str, key: str) -> str:
    """The unit of ``key`` for ``modality`` (``max_amplitude`` of TMS: %MSO)."""
    unit = SITE_KEYS[key]
    hard_unit = HARD_CEILINGS[modality].unit
    return hard_unit if not unit else f"{hard_unit}/s" if unit == "/s" else unit


def hard_ceiling(modality: str, key: str) -> float:
    """The hard ceiling of ``key`` for ``modality`` (inf where there is none)."""
    return getattr(HARD_CEILINGS[modality], key, math.inf)


class SiteLimitsError(ValueError):
    """A site file that cannot be used; ``lines`` holds one message per problem."""

    def __init__(self, where: str, lines: list[str]) -> None:
        self.where, self.lines = where, lines
        super().__init__(
            f"{where}: {'; '.join(lines)}. A site may only lower the hard ceilings: fix the "
            f"file, or point {SITE_LIMITS_ENV} at another one."
        )


@dataclass(frozen=True)
class SiteLimits:
    """The site layer: the site file's limits by modality (nothing when there is no file)."""

    path: Path | None = None
    """The site file in force; None: hard ceilings only."""
    origin: str = ""
    """Why this file: ``set by NEUROLOOP_SITE_LIMITS`` or ``the system-wide default``."""
    tables: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """``modality → {key: value}`` as the file sets them (units of :func:`unit_of`)."""

    def value(self, modality: str, key: str) -> float | None:
        """The site's limit of ``key`` for ``modality``; None where the file sets none."""
        return self.tables.get(modality, {}).get(key)

    def where(self) -> str:
        """The site file and why it is in force, for messages."""
        return f"site file {self.path}; {self.origin}" if self.path else "no site file"

    def ceiling(self, modality: str, key: str) -> tuple[float, str]:
        """The stricter of the site limit and the hard ceiling of ``key``, and which layer it
        is (``site limit (...)`` or ``tms hard ceiling (...)``)."""
        hard = hard_ceiling(modality, key)
        site = self.value(modality, key)
        if site is not None and site <= hard:
            return site, f"site limit ({self.where()})"
        return hard, f"{modality} hard ceiling ({HARD_CEILINGS[modality].source})"

    def describe(self) -> str:
        """One line for operators: which site file is in force."""
        if self.path is None:
            why = f" ({SITE_LIMITS_ENV}={NO_SITE_FILE})" if self.origin else ""
            return f"site limits: none{why}, hard ceilings only"
        return f"site limits: {self.path} ({self.origin})"


HARD_ONLY = SiteLimits()
"""No site layer: the hard ceilings only."""


def _table_problems(table: str, values: object) -> list[str]:
    if table not in HARD_CEILINGS:
        return [f"[{table}] is not a modality; tables are {', '.join(HARD_CEILINGS)}"]
    if not isinstance(values, dict):
        return [f"{table} must be a table ([{table}]), got {values!r}"]
    problems = []
    for key, value in values.items():
        if key not in SITE_KEYS:
            problems.append(f"[{table}] {key}: unknown key; allowed: {', '.join(SITE_KEYS)}")
            continue
        unit = unit_of(table, key)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _COUNTS and not (isinstance(value, int) and not isinstance(value, bool)):
            problems.append(f"[{table}] {key} = {value!r}: must be a whole number of pulses")
        elif not number or math.isnan(value) or value < 0 or (key == "max_slew_per_s"
                                                               and value == 0):  # fmt: skip
            low = "> 0" if key == "max_slew_per_s" else ">= 0"
            problems.append(f"[{table}] {key} = {value!r}: must be a number {low} {unit}")
        elif value > (ceiling := hard_ceiling(table, key)):
            problems.append(
                f"[{table}] {key} = {value:g} {unit} is above the {table} hard ceiling of "
                f"{ceiling:g} {unit} ({HARD_CEILINGS[table].source})"
            )
    return problems


def read_site_limits(path: str | Path, origin: str = "") -> SiteLimits:
    """Read and check a site file.

    Parameters
    ----------
    path : str | Path
        The TOML file.
    origin : str
        Why this file is in force, for messages (``set by NEUROLOOP_SITE_LIMITS``).

    Raises
    ------
    SiteLimitsError
        When the file cannot be read, is not TOML, or sets anything above a hard ceiling, naming
        the file, table, key, value and ceiling.
    """
    path = Path(path)
    where = f"site limits file {path}" + (f" ({origin})" if origin else "")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise SiteLimitsError(where, [f"cannot be read ({err.strerror or err})"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SiteLimitsError(where, [f"not valid TOML ({err})"]) from None
    problems = [line for table, values in data.items() for line in _table_problems(table, values)]
    if problems:
        raise SiteLimitsError(where, problems)
    tables = {table: MappingProxyType(dict(values)) for table, values in data.items()}
    return SiteLimits(path, origin, MappingProxyType(tables))


def site_limits_file() -> tuple[Path | None, str]:
    """The site file to use and why: ``$NEUROLOOP_SITE_LIMITS`` if set (``none``: no file),
    else the system-wide file if it exists, else none."""
    named = os.environ.get(SITE_LIMITS_ENV, "").strip()
    if named.lower() == NO_SITE_FILE:
        return None, f"set by {SITE_LIMITS_ENV}"
    if named:
        return Path(named).expanduser(), f"set by {SITE_LIMITS_ENV}"
    if SYSTEM_SITE_LIMITS.exists():
        return SYSTEM_SITE_LIMITS, "the system-wide default"
    return None, ""


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, origin: str, mtime_ns: int, size: int) -> SiteLimits:
    return read_site_limits(path, origin)


def load_site_limits() -> SiteLimits:
    """The site layer in force now (:func:`site_limits_file`), read once per file version: a
    changed file, or another ``$NEUROLOOP_SITE_LIMITS``, is read again.

    Raises
    ------
    SiteLimitsError
        When ``$NEUROLOOP_SITE_LIMITS`` names a file that does not exist (a typo must not
        silently drop a site's limits), or the file is not valid (:func:`read_site_limits`).
    """
    path, origin = site_limits_file()
    system = SYSTEM_SITE_LIMITS if SYSTEM_SITE_LIMITS.exists() else None
    if system is not None and path != system:
        # the system-wide file is the site's policy: the environment can only add to it
        site = _load(system, "the system-wide default")
        if path is None:
            return SiteLimits(system, f"the system-wide default ({SITE_LIMITS_ENV}="
                              f"{NO_SITE_FILE} cannot lift it)", site.tables)  # fmt: skip
        return _stricter(site, _load(path, origin))
    if path is None:
        return SiteLimits(None, origin)
    return _load(path, origin)


def _load(path: Path, origin: str) -> SiteLimits:
    try:
        stat = path.stat()
    except OSError as err:
        raise SiteLimitsError(
            f"site limits file {path} ({origin})",
            [f"cannot be read ({err.strerror or err}); set {SITE_LIMITS_ENV}={NO_SITE_FILE} "
             "for hard ceilings only"],
        ) from None  # fmt: skip
    return _read_cached(str(path), origin, stat.st_mtime_ns, stat.st_size)


def _stricter(system: SiteLimits, chosen: SiteLimits) -> SiteLimits:
    """The system-wide file and the one the environment names, each limit the lower of both."""
    tables = {}
    for modality in {*system.tables, *chosen.tables}:
        a, b = system.tables.get(modality, {}), chosen.tables.get(modality, {})
        tables[modality] = MappingProxyType(
            {key: min(v for v in (a.get(key), b.get(key)) if v is not None) for key in {*a, *b}}
        )
    origin = f"{chosen.origin}, each limit the stricter of it and {system.path}"
    return SiteLimits(chosen.path, origin, MappingProxyType(tables))


def limits_problems(stimulator: StimulatorSection, site: SiteLimits,
                    peak: float | None = None) -> list[str]:  # fmt: skip
    """Where a protocol's ``[stimulator.limits]``, or its controller's ``peak`` amplitude,
    exceed the site layer: one line each, naming the field, the value, the site limit and its
    file. (The hard ceilings are checked when the protocol is validated.)"""
    modality, limits = stimulator.modality, stimulator.limits
    problems = []
    for key in SITE_KEYS:
        value = getattr(limits, key)
        site_value = site.value(modality, key)
        if value is None or site_value is None or value <= site_value:
            continue
        if key == "max_slew_per_s" and modality == "tms":
            continue  # a TMS intensity is a setting, not slewed
        unit = unit_of(modality, key)
        problems.append(
            f"stimulator.limits.{key}: got {value:g} {unit}; above the site limit of "
            f"{site_value:g} {unit} ({site.where()})"
        )
    site_amplitude = site.value(modality, "max_amplitude")
    if peak is not None and site_amplitude is not None and peak > site_amplitude:
        unit = unit_of(modality, "max_amplitude")
        problems.append(
            f"controller: asks for up to {peak:g} {unit}; above the site limit of "
            f"{site_amplitude:g} {unit} ({site.where()})"
        )
    return problems
