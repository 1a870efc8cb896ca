"""Read a protocol TOML, apply ``--set`` overrides, validate, explain each error in one line."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bci.protocol.schema import Protocol
from bci.safety.site import SiteLimitsError, limits_problems, load_site_limits

PROTOCOLS_DIR = Path(__file__).resolve().parents[2] / "protocols"
"""The ``protocols/`` folder of a source checkout."""


class ProtocolError(ValueError):
    """A protocol that cannot run; ``lines`` holds one message per problem."""

    def __init__(self, source: str, lines: list[str]) -> None:
        self.source = source
        self.lines = lines
        super().__init__(f"{source}: " + "; ".join(lines))


def find_protocol(name: str | Path) -> Path:
    """A protocol path as given, or a bare name (``demo``) looked up in ``protocols/``."""
    path = Path(name)
    if path.exists():
        return path
    bundled = PROTOCOLS_DIR / f"{path.stem}.toml"
    if path.suffix in ("", ".toml") and path.parent == Path(".") and bundled.exists():
        return bundled
    available = ", ".join(sorted(p.stem for p in PROTOCOLS_DIR.glob("*.toml")))
    raise ProtocolError(str(name), [f"file not found; bundled protocols are: {available}"])


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=value``; the value is read as TOML (``1.5``, ``true``, ``[8, 30]``)
    and taken as a plain string when it is not valid TOML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ProtocolError("--set", [f"{text!r} is not of the form dotted.key=value"])
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """A copy of ``data`` with each ``dotted.key=value`` set (list items by index: ``blocks.2``)."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    where = ".".join(path[:i])
                    raise ProtocolError("--set", [f"{where} has no item {part!r} ({text})"])
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                where = ".".join(path[: i + 1])
                raise ProtocolError("--set", [f"{where} is a value, not a table ({text})"])
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ProtocolError("--set", [f"no list item {last!r} for {text!r}"])
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _field_path(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(protocol)"


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per pydantic error: field path, the value received, what is allowed."""
    lines = []
    for item in error.errors():
        raw = item["loc"]
        # drop pydantic's validator names and the controller's union tag (controller.phase.x)
        loc = tuple(
            part for i, part in enumerate(raw)
            if part != "function-after" and not (i and raw[i - 1] == "controller")
        )  # fmt: skip
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"{_field_path(loc)}: missing; this field is required")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{_field_path(loc)}: unknown field; check its spelling")
        elif loc and item["type"] != "value_error":
            lines.append(f"{_field_path(loc)}: got {item['input']!r}; {message}")
        else:
            # model validators word their messages "<field below loc>: got ...; ..."
            field, sep, rest = message.partition(": ")
            if sep and field.replace("_", "").replace(".", "").isalnum():
                lines.append(f"{_field_path((*loc, field))}: {rest}")
            else:
                lines.append(f"{_field_path(loc)}: {message}")
    return lines


@cache
def standard_channel_names() -> frozenset[str]:
    """Every electrode name of the 10-05 system (MNE's template montage)."""
    from devices.virtual_subject.montage import montage_positions

    return frozenset(montage_positions())


def channel_problems(protocol: Protocol, source_channels: Callable[[int], list[str]]) -> list[str]:
    """Channel names that the protocol uses but its source cannot provide."""
    problems = []
    standard = standard_channel_names()
    if protocol.source.kind == "virtual":
        available = set(source_channels(protocol.source.eeg_channels))
        where = f"the {protocol.source.eeg_channels}-channel virtual subject"
    else:
        available, where = standard, "the 10-05 system"
    for i, name in enumerate(protocol.preprocessing.picks):
        if name not in available:
            problems.append(
                f"preprocessing.picks.{i}: got {name!r}; not a channel of {where} "
                f"(e.g. {', '.join(sorted(available)[:8])}, ...)"
            )
    for field in ("anode", "cathode"):
        name = getattr(protocol.stimulator, field)
        if name not in standard:
            problems.append(f"stimulator.{field}: got {name!r}; not a 10-05 electrode name")
    return problems


_MODEL_PREPROCESSING = ("picks", "car", "notch_hz", "bandpass_hz", "filter_order", "window_s")
"""Preprocessing a pretrained model's windows went through; a protocol must match it."""


def model_problems(protocol: Protocol) -> list[str]:
    """Why the protocol's pretrained model (``decoder.model``, an absolute path) cannot run
    with the protocol's preprocessing, classes and source; empty if it can."""
    from bci.decode.base import read_model_file

    decoder = protocol.decoder
    try:
        header, _ = read_model_file(decoder.model)
    except ValueError as err:
        return [f"decoder.model: {err}"]
    problems = []
    if header["kind"] != decoder.kind:
        problems.append(
            f"decoder.kind: got {decoder.kind!r}; the model file holds a {header['kind']!r} "
            "decoder: set decoder.kind to match"
        )
    if tuple(header["info"]["classes"]) != tuple(decoder.classes):
        problems.append(
            f"decoder.classes: got {list(decoder.classes)}; the model was trained on "
            f"{header['info']['classes']}"
        )
    if decoder.alignment is not None and decoder.alignment != header.get("alignment"):
        problems.append(
            f"decoder.alignment: got {decoder.alignment!r}; the model was pretrained with "
            f"{header.get('alignment')!r}: set it to match or leave it out"
        )
    eeg, nirs = header["info"].get("eeg"), header["info"].get("nirs")
    trained = header.get("preprocessing", {}) if eeg else {}  # EEG preprocessing
    ours = protocol.preprocessing.model_dump(mode="json")
    for name in _MODEL_PREPROCESSING:
        if name in trained and trained[name] != ours[name]:
            problems.append(
                f"preprocessing.{name}: got {ours[name]!r}; the model was trained with "
                f"{trained[name]!r}: set it to match or train a model for these settings"
            )
    if nirs and nirs["window_s"] != decoder.nirs_window_s:
        problems.append(
            f"decoder.nirs_window_s: got {decoder.nirs_window_s}; the model reads "
            f"{nirs['window_s']} s fNIRS windows"
        )
    if eeg and protocol.source.kind == "virtual" and eeg["sfreq"] != protocol.source.eeg_srate:
        problems.append(
            f"source.eeg_srate: got {protocol.source.eeg_srate:g}; the model was trained at "
            f"{eeg['sfreq']:g} Hz"
        )
    return problems


def site_problems(protocol: Protocol) -> list[str]:
    """Where the protocol's stimulation limits, or its controller's peak amplitude, are above
    the site limits in force (:mod:`bci.safety.site`); a bad site file is one problem."""
    try:
        site = load_site_limits()
    except SiteLimitsError as err:
        return [f"{err.where}: {line}" for line in err.lines]
    return limits_problems(protocol.stimulator, site, peak=protocol.controller.peak)


def _resolve_model(protocol: Protocol, folder: Path) -> Protocol:
    """The protocol with ``decoder.model`` made absolute (relative names are relative to the
    protocol file's folder)."""
    if protocol.decoder.model is None:
        return protocol
    model = (folder / protocol.decoder.model).resolve()
    decoder = protocol.decoder.model_copy(update={"model": str(model)})
    return protocol.model_copy(update={"decoder": decoder})


def _virtual_channels(n_channels: int) -> list[str]:
    from devices.virtual_subject.montage import select_channels

    return list(select_channels(n_channels))


def load_protocol(path: str | Path, overrides: Iterable[str] = ()) -> tuple[Protocol, str]:
    """Read, override and validate a protocol.

    Parameters
    ----------
    path : str | Path
        A TOML file, or the name of a bundled protocol (``demo``).
    overrides : iterable of str
        ``dotted.key=value`` settings applied before validation.

    Returns
    -------
    protocol : Protocol
        The validated protocol.
    text : str
        The file's text (recorded with the session).

    Raises
    ------
    ProtocolError
        With one line per problem.
    """
    file = find_protocol(path)
    text = file.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProtocolError(str(file), [f"not valid TOML: {err}"]) from None
    return protocol_from_data(data, str(file), file.parent, overrides), text


def protocol_from_data(data: dict, source: str, folder: Path,
                       overrides: Iterable[str] = ()) -> Protocol:  # fmt: skip
    """Override and validate a protocol's data (a parsed TOML file, or the validated protocol a
    recording carries); ``source`` names it in errors, ``folder`` anchors a relative model path.

    Raises
    ------
    ProtocolError
        With one line per problem.
    """
    data = apply_overrides(data, overrides)
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as err:
        raise ProtocolError(source, format_validation_error(err)) from None
    protocol = _resolve_model(protocol, folder)
    problems = channel_problems(protocol, _virtual_channels)
    if protocol.decoder.model is not None:
        problems += model_problems(protocol)
    problems += site_problems(protocol)
    if problems:
        raise ProtocolError(source, problems)
    return protocol
