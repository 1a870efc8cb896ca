"""What ``bci train`` trains with: event codes, preprocessing, decoder and epoch settings, from
a protocol (or the schema's defaults), ``--set`` overrides and the command-line options."""

from __future__ import annotations

from pydantic import ValidationError

from bci.protocol import ProtocolError, apply_overrides, load_protocol
from bci.protocol.load import format_validation_error
from bci.protocol.schema import DecoderSection, PreprocessingSection
from bci.train.files import Recording, TrainingInputError

FNIRS_EPOCH_S = (0.0, 8.0)
"""Default epoch of a decoder that reads fNIRS alone, s after the event: windows end 5–8 s
after the cue, around the peak of the haemodynamic response (Naseer & Hong 2015), and start
early enough that their first second (the decoder's baseline) precedes the response."""
DEFAULT_PICKS = tuple(PreprocessingSection().picks)
"""The schema's default EEG channels."""
ALL_CHANNELS = "all"
"""``--picks all``: every EEG channel common to the files."""


def parse_events(specs: list[str]) -> dict[str, str]:
    """``["769=left,770=right"]`` → ``{"769": "left", "770": "right"}`` (codes as in the file).

    Several codes may share a label; a code may contain ``=`` (the label is after the last).
    """
    events: dict[str, str] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            code, sep, label = item.rpartition("=")
            if not sep or not code.strip() or not label.strip():
                raise TrainingInputError(
                    f"--events: {item!r} is not CODE=label; e.g. --events 769=left,770=right or "
                    "--events T1=left,T2=right."
                )
            code, label = code.strip(), label.strip()
            if events.get(code, label) != label:
                raise TrainingInputError(
                    f"--events: code {code!r} is given two labels, {events[code]!r} and {label!r}."
                )
            events[code] = label
    if len(set(events.values())) < 2:
        raise TrainingInputError(
            f"--events: got {events or 'nothing'}; a decoder needs codes of at least two classes, "
            "e.g. --events left=left,right=right."
        )
    return events


def classes_of(events: dict[str, str]) -> tuple[str, ...]:
    """Class labels in the order ``--events`` first names them (``prepare`` keeps the
    protocol's ``decoder.classes`` order when the labels are those)."""
    return tuple(dict.fromkeys(events.values()))


def sections(protocol: str | None, overrides: list[str]) -> tuple[
    PreprocessingSection, DecoderSection, bool
]:  # fmt: skip
    """The preprocessing and decoder sections to train with.

    Parameters
    ----------
    protocol : str or None
        Protocol file (or bundled name); None: the schema's defaults.
    overrides : list of str
        ``--set dotted.key=value``; without a protocol only ``preprocessing.*`` and
        ``decoder.*`` keys.

    Returns
    -------
    preprocessing, decoder
        The validated sections.
    picks_given : bool
        Whether the channels were chosen (by the protocol or ``--set preprocessing.picks``)
        rather than left at the schema's default.

    Raises
    ------
    ProtocolError
        One line per problem.
    """
    if protocol is not None:
        loaded, _ = load_protocol(protocol, overrides)
        return loaded.preprocessing, loaded.decoder, True
    data = apply_overrides({"preprocessing": {}, "decoder": {}}, overrides)
    unknown = sorted(set(data) - {"preprocessing", "decoder"})
    if unknown:
        raise ProtocolError(
            "--set", [f"{key}: only preprocessing.* and decoder.* apply without --protocol"
                      for key in unknown]
        )  # fmt: skip
    validated, problems = {}, []
    for name, section in (("preprocessing", PreprocessingSection), ("decoder", DecoderSection)):
        try:
            validated[name] = section.model_validate(data[name])
        except ValidationError as error:
            problems += [f"{name}.{line}" for line in format_validation_error(error)]
    if problems:
        raise ProtocolError("--set", problems)
    return validated["preprocessing"], validated["decoder"], "picks" in data["preprocessing"]


def with_fields(pre: PreprocessingSection, **fields) -> PreprocessingSection:
    """A validated copy of ``pre`` with ``fields`` changed."""
    try:
        return PreprocessingSection.model_validate({**pre.model_dump(), **fields})
    except ValidationError as error:
        raise TrainingInputError("; ".join(format_validation_error(error))) from None


def common_eeg_channels(recordings: list[Recording]) -> list[str]:
    """EEG channels every recording has, in the first one's order."""
    with_eeg = [r for r in recordings if r.eeg is not None]
    if not with_eeg:
        return []
    names = list(with_eeg[0].eeg.eeg_names)
    for recording in with_eeg[1:]:
        names = [name for name in names if name in recording.eeg.eeg_names]
    return names


def resolve_picks(pre: PreprocessingSection, picks: str | None, picks_given: bool,
                  recordings: list[Recording]) -> PreprocessingSection:  # fmt: skip
    """Settle the EEG channels: ``--picks`` (names, or ``all``), else the protocol's, else
    C3, Cz, C4 when every file has them, else every EEG channel common to the files."""
    available = common_eeg_channels(recordings)
    if picks is not None and picks.strip().lower() != ALL_CHANNELS:
        chosen = [name.strip() for name in picks.split(",") if name.strip()]
        missing = [name for name in chosen if name not in available]
        if missing:
            raise TrainingInputError(
                f"--picks: {missing} not among the EEG channels of every file; available: "
                f"{available}."
            )
    elif picks is None and (picks_given or all(name in available for name in DEFAULT_PICKS)):
        return pre
    else:
        chosen = available
    if len(chosen) < 2:
        raise TrainingInputError(
            f"--picks: the decoder needs at least two EEG channels; got {chosen} (the files' "
            f"common EEG channels: {available})."
        )
    return with_fields(pre, picks=chosen)
