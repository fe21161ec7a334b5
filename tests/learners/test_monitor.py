import numpy as np

from learners.monitor import DriftConfig, DriftMonitor


def textured(level: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((24, 32, 3), level, np.int16) + rng.integers(-8, 9, (24, 32, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def stream(n_day: int, n_night: int):
    return [textured(140, i) for i in range(n_day)] + [textured(25, 1000 + i) for i in range(n_night)]


def test_input_drift_found_quickly_and_once():
    m = DriftMonitor(DriftConfig())
    hits = [i for i, img in enumerate(stream(200, 200)) if m.update_input(img, i)]
    assert len(hits) == 1 and 200 <= hits[0] <= 215


def test_no_drift_on_a_stationary_stream():
    m = DriftMonitor(DriftConfig())
    assert not any(m.update_input(img, i) for i, img in enumerate(stream(600, 0)))


def test_cooldown_folds_detections_together():
    m = DriftMonitor(DriftConfig(input=False, cooldown=100))
    fired = []
    for i in range(400):
        value = 0.05 if i < 100 else 0.6 if i < 250 else 0.95
        if m.update_disagreement(value, i):
            fired.append(i)
    assert fired and 100 <= fired[0] < 200
    assert all(b - a > 100 for a, b in zip(fired, fired[1:]))


def test_disagreement_falling_is_not_a_drift():
    m = DriftMonitor(DriftConfig(input=False))
    values = [0.6] * 150 + [0.05] * 300  # the student catching up
    assert not any(m.update_disagreement(v, i) for i, v in enumerate(values))


def test_state_round_trip_continues_identically():
    frames = stream(150, 100)
    a = DriftMonitor(DriftConfig())
    for i, img in enumerate(frames[:120]):
        a.update_input(img, i)
    b = DriftMonitor(DriftConfig())
    b.load_state(a.state())
    rest_a = [a.update_input(img, i) for i, img in enumerate(frames[120:], 120)]
    rest_b = [b.update_input(img, i) for i, img in enumerate(frames[120:], 120)]
    assert rest_a == rest_b and any(rest_a)


def test_a_replay_of_precomputed_features_detects_the_same_frames():
    from learners.input_stats import frame_statistics

    images = stream(150, 150) + [textured(140, 5000 + i) for i in range(150)]
    live, replay = DriftMonitor(DriftConfig(cooldown=20)), DriftMonitor(DriftConfig(cooldown=20))
    hits = [i for i, img in enumerate(images) if live.update_input(img, i)]
    again = [i for i, img in enumerate(images) if replay.update_input_features(frame_statistics(img), i)]
    assert len(hits) == 2 and again == hits
    assert not DriftMonitor(DriftConfig(input=False)).update_input_features(frame_statistics(images[0]), 0)
