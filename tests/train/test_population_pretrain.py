import numpy as np

from bci.protocol import load_protocol
from bci.train.population import simulate_calibration
from bci.train.pretrain import HELD_OUT_SEEDS, POPULATION_SEEDS, pool, pretrain


def test_simulated_calibration_matches_the_session_windows():
    protocol, _ = load_protocol("demo", ["decoder.model="])
    data = simulate_calibration(protocol, seed=3, n_trials=8, order_seed=5)
    pre = protocol.preprocessing
    assert data.windows["eeg"].shape[1:] == (500, len(pre.picks))
    assert data.windows["nirs"].shape[1:] == (50, 16)  # 5 s of HbO/HbR at 10 Hz, 8 pairs
    assert data.eeg_ch_names == tuple(pre.picks) and data.nirs_ch_names[0] == "S1_D1 hbo"
    assert sorted(set(data.labels)) == ["left", "right"] and len(set(data.groups)) == 8
    again = simulate_calibration(protocol, seed=3, n_trials=8, order_seed=5)
    np.testing.assert_array_equal(again.windows["eeg"], data.windows["eeg"])
    part = data.trials(np.array([0, 1]))
    assert set(part.groups) == {0, 1} and len(part.labels) == len(part.windows["nirs"])


def test_pretraining_is_reproducible_and_keeps_subjects_apart():
    assert not set(POPULATION_SEEDS) & set(HELD_OUT_SEEDS)
    protocol, _ = load_protocol("demo", ["decoder.model="])
    subjects = [simulate_calibration(protocol, s, 6, order_seed=s) for s in (101, 102)]
    _, labels, groups, seeds = pool(subjects)
    assert len(set(groups)) == 12 and set(seeds) == {101, 102} and len(labels) == len(groups)
    first, second = (
        pretrain(protocol, "eegnet", seeds=[101, 102], n_trials=6, epochs=2, progress=False)
        for _ in range(2)
    )
    for name, value in first.state()[1].items():
        np.testing.assert_array_equal(second.state()[1][name], value, err_msg=name)
    assert first.preprocessing["picks"] == list(protocol.preprocessing.picks)
