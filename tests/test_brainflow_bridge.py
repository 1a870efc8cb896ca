"""The BrainFlow bridge: BrainFlow's synthetic board published over the real LSL loopback."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pylsl
import pytest
from brainflow.board_shim import BoardIds, BoardShim

from devices.brainflow_bridge import BrainFlowBridge, BridgeSettings, list_boards
from tests.conftest import wait_for

MISSING_PORT = "/dev/ttyNEUROLOOP-missing"


@pytest.fixture
def synthetic(unique_name) -> BridgeSettings:
    return BridgeSettings(board="synthetic", name=f"{unique_name}-bf", source_id=unique_name)


def open_inlet(name: str) -> pylsl.StreamInlet:
    """An inlet on the stream called ``name``, with its full metadata; raw timestamps."""
    infos = pylsl.resolve_byprop("name", name, timeout=5.0)
    assert infos, f"stream {name!r} did not appear"
    inlet = pylsl.StreamInlet(infos[0], max_buflen=10, processing_flags=0)
    inlet.open_stream(timeout=5.0)
    return inlet


def channel_values(info: pylsl.StreamInfo, field: str) -> list[str]:
    channel = info.desc().child("channels").child("channel")
    values = []
    while not channel.empty():
        values.append(channel.child_value(field))
        channel = channel.next_sibling("channel")
    return values


# settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "canonical", "member"),
    [
        ("synthetic", "synthetic", BoardIds.SYNTHETIC_BOARD),
        ("Synthetic_Board", "synthetic", BoardIds.SYNTHETIC_BOARD),
        ("CYTON_DAISY_BOARD", "cyton_daisy", BoardIds.CYTON_DAISY_BOARD),
        ("cyton-daisy", "cyton_daisy", BoardIds.CYTON_DAISY_BOARD),
        ("muse_s", "muse_s", BoardIds.MUSE_S_BOARD),
        (
            "neuropawn_knight_board_imu",
            "neuropawn_knight_board_imu",
            BoardIds.NEUROPAWN_KNIGHT_BOARD_IMU,
        ),
    ],
)
def test_board_names_are_case_insensitive_with_optional_suffix(given, canonical, member):
    settings = BridgeSettings(board=given)
    assert settings.board == canonical
    assert settings.board_id == member.value
    assert settings.name == f"BrainFlow-{canonical}"
    assert settings.source_id == f"brainflow-{canonical}"


def test_defaults_and_connection_parameters():
    settings = BridgeSettings(board="cyton", serial_port="/dev/ttyUSB0", other_info="x")
    assert settings.source_id == "brainflow-cyton-/dev/ttyUSB0"
    params = settings.input_params()
    assert (params.serial_port, params.other_info, params.ip_port) == ("/dev/ttyUSB0", "x", 0)
    wifi = BridgeSettings(board="cyton_wifi", ip_address="192.168.4.1", ip_port=6677)
    assert wifi.source_id == "brainflow-cyton_wifi-192.168.4.1:6677"
    assert wifi.input_params().ip_address == "192.168.4.1"
    muse = BridgeSettings(board="muse_s", mac_address="00:55:DA:B0:00:01", name="Muse")
    assert muse.input_params().mac_address == "00:55:DA:B0:00:01"
    assert (muse.name, muse.source_id) == ("Muse", "brainflow-muse_s-00:55:DA:B0:00:01")


def test_list_boards_names_what_settings_accept():
    boards = list_boards()
    assert boards == sorted(boards)
    assert {"synthetic", "cyton", "cyton_daisy", "ganglion", "muse_s"} <= set(boards)
    assert not {"no", "playback_file", "streaming"} & set(boards)
    for board in boards:
        assert BridgeSettings(board=board).board == board


@pytest.mark.parametrize("board", ["openbci", "", "playback_file", "no_board"])
def test_unknown_board_is_refused_with_valid_names(board):
    with pytest.raises(ValueError, match=r"board=.*synthetic, cyton") as err:
        BridgeSettings(board=board)
    assert repr(board) in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chunk_s", 0.0),
        ("chunk_s", float("nan")),
        ("chunk_s", 5.0),
        ("ip_port", 70000),
        ("log_level", "loud"),
        ("name", ""),
        ("source_id", " "),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BridgeSettings(board="synthetic", **{field: value})


def test_run_refuses_a_bad_duration(synthetic):
    bridge = BrainFlowBridge(synthetic)
    with pytest.raises(ValueError, match="duration_s"):
        bridge.run(duration_s=-1)
    assert not bridge.connected


def test_boards_without_eeg_names_get_numbered_labels():
    ganglion = BrainFlowBridge(BridgeSettings(board="ganglion", include_aux=True))
    assert ganglion.ch_names == ("EEG1", "EEG2", "EEG3", "EEG4", "AccelX", "AccelY", "AccelZ")
    assert ganglion.ch_types == ("EEG",) * 4 + ("ACC",) * 3
    assert ganglion.sfreq == 200
    with pytest.raises(ValueError, match="board='gforce_pro' has no EEG channels"):
        BrainFlowBridge(BridgeSettings(board="gforce_pro"))


# lifecycle -----------------------------------------------------------------------------------
def test_wrong_state_calls_say_what_to_call_first(synthetic):
    bridge = BrainFlowBridge(synthetic)
    for call in (bridge.start, bridge.pump, bridge.stop, bridge.disconnect):
        with pytest.raises(RuntimeError, match=r"call connect\(\) before"):
            call()
    with bridge:
        assert bridge.connected and not bridge.streaming
        with pytest.raises(RuntimeError, match=r"call disconnect\(\) first"):
            bridge.connect()
        for call in (bridge.pump, bridge.stop):
            with pytest.raises(RuntimeError, match=r"call start\(\) before"):
                call()
        bridge.start()
        with pytest.raises(RuntimeError, match=r"call stop\(\) first"):
            bridge.start()
        bridge.stop()
        bridge.start()  # a second start after stop works
        assert bridge.streaming
    assert not bridge.connected and not bridge.streaming  # __exit__ stopped and released
    bridge.connect()  # the session was released, so it opens again
    bridge.disconnect()


@pytest.mark.parametrize("include_aux", [False, True])
def test_outlet_carries_channels_rate_and_acquisition(synthetic, include_aux):
    settings = dataclasses.replace(synthetic, include_aux=include_aux)
    aux = ["AccelX", "AccelY", "AccelZ", "GyroX", "GyroY", "GyroZ"] if include_aux else []
    with BrainFlowBridge(settings) as bridge:
        eeg = BoardShim.get_eeg_names(BoardIds.SYNTHETIC_BOARD.value)
        bridge.start()
        inlet = open_inlet(settings.name)
        info = inlet.info(timeout=5.0)
        assert info.type() == "EEG" and info.source_id() == settings.source_id
        assert info.channel_count() == len(eeg) + len(aux) == len(bridge.ch_names)
        assert info.channel_format() == pylsl.cf_float32
        assert info.nominal_srate() == BoardShim.get_sampling_rate(settings.board_id) == 250
        assert channel_values(info, "label") == eeg + aux
        assert channel_values(info, "unit") == ["microvolts"] * len(eeg) + [""] * len(aux)
        types = channel_values(info, "type")
        assert types == ["EEG"] * len(eeg) + ["ACC"] * (len(aux) // 2) + ["GYRO"] * (len(aux) // 2)
        acquisition = info.desc().child("acquisition")
        assert acquisition.child_value("manufacturer") == "BrainFlow"
        assert acquisition.child_value("model") == "synthetic"
        assert acquisition.child_value("serial_port") == ""
        inlet.close_stream()


def test_streams_the_nominal_rate_on_the_local_clock(synthetic):
    bridge = BrainFlowBridge(synthetic)
    stop = threading.Event()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["n"] = bridge.run(stop_event=stop)
        except BaseException as err:  # surfaced in the test thread below
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        inlet = open_inlet(synthetic.name)
        stamps, ages, n_values = [], [], []
        start = pylsl.local_clock()
        while pylsl.local_clock() - start < 2.0:
            data, times = inlet.pull_chunk(timeout=0.1)
            if times:
                ages.append(pylsl.local_clock() - times[-1])
                stamps += times
                n_values.append(np.asarray(data).shape[1])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert "error" not in result, result.get("error")
    assert not thread.is_alive() and not bridge.connected  # run released what it opened
    stamps = np.asarray(stamps)
    assert set(n_values) == {16}
    assert 0.85 * 500 < len(stamps) < 1.15 * 500  # about 2 s at 250 Hz
    assert np.all(np.diff(stamps) > 0)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate == pytest.approx(250, rel=0.05)
    assert -0.01 < min(ages) and max(ages) < 0.25  # fresh, and never from the future
    assert result["n"] >= len(stamps)


def test_run_for_a_duration_keeps_what_the_caller_opened(synthetic):
    with BrainFlowBridge(synthetic) as bridge:
        start = pylsl.local_clock()
        n = bridge.run(duration_s=0.3)
        elapsed = pylsl.local_clock() - start
        assert bridge.connected and not bridge.streaming
        assert 0.3 <= elapsed < 1.0
        assert 0.5 * 0.3 * 250 < n < 1.5 * 0.3 * 250
        bridge.start()
        assert wait_for(lambda: bridge.pump() > 0, timeout_s=2.0)
        assert bridge.run(duration_s=0.1) > 0
        assert bridge.streaming  # started by the caller, so left streaming
        assert bridge.newest_time <= pylsl.local_clock()
        assert abs(bridge.clock_offset - (pylsl.local_clock() - time.time())) < 1e-3


# errors --------------------------------------------------------------------------------------
def test_cyton_on_a_missing_port_says_which_port_and_what_to_do(capfd):
    bridge = BrainFlowBridge(BridgeSettings(board="cyton", serial_port=MISSING_PORT))
    with pytest.raises(RuntimeError) as err:
        bridge.connect()
    message = str(err.value)
    assert "\n" not in message
    assert "'cyton'" in message and MISSING_PORT in message and "--serial-port" in message
    assert "UNABLE_TO_OPEN_PORT_ERROR" in message
    assert not bridge.connected
    with pytest.raises(RuntimeError, match="--serial-port"):
        bridge.run(duration_s=1.0)  # the CLI's path
    assert "[board_logger]" in capfd.readouterr().err  # BrainFlow's own errors still show


def test_cyton_without_a_port_asks_for_one_and_log_level_off_is_quiet(capfd):
    bridge = BrainFlowBridge(BridgeSettings(board="cyton", log_level="off"))
    with pytest.raises(RuntimeError, match=r"no serial port given.*--serial-port /dev/ttyUSB0"):
        bridge.connect()
    assert "[board_logger]" not in capfd.readouterr().err
