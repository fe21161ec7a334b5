"""DriftMonitor with a named detector on named signals (drift.detector / drift.signals), and the
StreamLearner feeding it the student's entropy from its own prediction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.confidence import softmax_confidence
from learners.monitor import DriftConfig, DriftMonitor
from learners.online import OnlineConfig
from learners.stream_learner import LocalTeacherClient, StreamLearner, StreamLearnerConfig
from perception.nets import STUDENT_CONFIG, SegNet
from stream.config import ConfigError, RunConfig, apply_overrides


def textured(level: int, seed: int, blue: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((24, 32, 3), level, np.int16) + rng.integers(-8, 9, (24, 32, 3))
    img[..., 2] += blue
    return np.clip(img, 0, 255).astype(np.uint8)


def test_settings_are_checked_naming_the_setting():
    with pytest.raises(ValueError, match=r"drift.detector: unknown detector 'vcusum'; choose one of page_hinkley"):
        DriftConfig(detector="vcusum")
    with pytest.raises(ValueError, match=r"drift.signals: unknown signal 'entropie'"):
        DriftConfig(detector="cusum", signals=("entropie",))
    with pytest.raises(ValueError, match=r"drift.signals: detector 'mcusum' watches the frame-statistics vector"):
        DriftConfig(detector="mcusum", signals=("input",))
    with pytest.raises(ConfigError, match=r"drift.detector: unknown detector 'foo'"):
        apply_overrides(RunConfig(), ["drift.detector=foo"])
    with pytest.raises(ConfigError, match=r"drift.signals: detector 'adwin' watches one scalar signal"):
        apply_overrides(RunConfig(), ["drift.detector=adwin", "drift.signals=input,entropy"])
    config = apply_overrides(RunConfig(), ["drift.detector=mcusum", "drift.signals=stats"])
    assert (config.drift.detector, config.drift.signals) == ("mcusum", ("stats",))
    assert (DriftConfig().detector, DriftConfig().signals) == ("page_hinkley", ("input",))


def test_mcusum_on_the_frame_statistics_finds_a_change_once_and_keeps_quiet_otherwise():
    m = DriftMonitor(DriftConfig(detector="mcusum", signals=("stats",), disagreement=False))
    images = [textured(140, i) for i in range(300)] + [textured(40, 1000 + i, blue=60) for i in range(300)]
    hits = [i for i, img in enumerate(images) if m.update_frame(img, i)]
    assert len(hits) == 1 and 300 <= hits[0] <= 310
    quiet = DriftMonitor(DriftConfig(detector="mcusum", signals=("stats",)))
    assert not any(quiet.update_frame(textured(140, i), i) for i in range(600))


def test_state_round_trip_and_a_mismatched_detector_is_refused():
    config = DriftConfig(detector="mcusum", signals=("stats",))
    images = [textured(140, i) for i in range(100)] + [textured(30, 500 + i) for i in range(60)]
    a = DriftMonitor(config)
    for i, img in enumerate(images[:90]):
        a.update_frame(img, i)
    b = DriftMonitor(config)
    b.load_state(a.state())
    rest_a = [a.update_frame(img, i) for i, img in enumerate(images[90:], 90)]
    rest_b = [b.update_frame(img, i) for i, img in enumerate(images[90:], 90)]
    assert rest_a == rest_b and any(rest_a)
    with pytest.raises(ValueError, match=r"state saved with detector \('mcusum', \('stats',\)\)"):
        DriftMonitor(DriftConfig()).load_state(a.state())
    with pytest.raises(ValueError, match=r"state saved with detector \('page_hinkley', \('input',\)\)"):
        DriftMonitor(config).load_state(DriftMonitor(DriftConfig()).state())


def test_entropy_detector_and_combined_with_disagreement():
    image = textured(140, 0)
    m = DriftMonitor(DriftConfig(detector="cusum", signals=("entropy",), disagreement=False))
    assert m.wants_confidence
    rng = np.random.default_rng(0)
    entropy = np.concatenate([0.3 + 0.01 * rng.normal(size=200), 0.6 + 0.01 * rng.normal(size=100)])
    hits = [i for i, e in enumerate(entropy) if m.update_frame(image, i, entropy=float(e), confidence=1 - float(e))]
    assert len(hits) == 1 and 200 <= hits[0] <= 215
    combined = DriftMonitor(DriftConfig(detector="combined", signals=("entropy", "disagreement"), disagreement=False))
    fired = []
    for i in range(400):
        combined.update_frame(image, i, entropy=0.3 + 0.01 * float(rng.normal()))
        if i % 4 == 0 and combined.update_disagreement(0.1 if i < 250 else 0.5, i):
            fired.append(i)
    assert len(fired) == 1 and 250 <= fired[0] <= 300
    assert not DriftMonitor(DriftConfig(detector="mcusum", signals=("stats",))).wants_confidence


class _Teacher:
    name, device, params = "toy", "cpu", 0

    def label(self, images):
        from perception.teacher import TeacherOutput

        labels = np.where(images.mean(-1) > 100, 10, 0).astype(np.uint8)  # (B, H, W)
        return TeacherOutput(labels, np.zeros((len(images), 19, 4, 8), np.float32))


def test_the_learner_feeds_the_entropy_of_its_own_prediction():
    torch.manual_seed(0)
    learner = StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(_Teacher()), seed=0,
                            config=StreamLearnerConfig(teacher_latency=1), online=OnlineConfig(batch_size=2, steps_per_label=1),
                            drift=DriftConfig(detector="cusum", signals=("entropy",)))
    seen, predicts = [], []
    update_frame, predict = learner.monitor.update_frame, learner.learner.predict

    def spy_update(image, index, entropy=None, confidence=None):
        seen.append((entropy, confidence, learner.learner.last_logits.clone()))
        return update_frame(image, index, entropy, confidence)

    def spy_predict(image):
        predicts.append(image)
        return predict(image)

    learner.monitor.update_frame, learner.learner.predict = spy_update, spy_predict
    from stream.frame import Frame

    for i in range(6):
        image = textured(140, i)
        learner.step(Frame(image, i * 0.1, "toy", i).observation())
    assert len(predicts) == 6 and len(seen) == 6  # one forward pass per frame
    for entropy, confidence, logits in seen:
        e, c = softmax_confidence(logits)
        assert entropy == pytest.approx(float(e[0])) and confidence == pytest.approx(float(c[0]))
        assert 0.0 <= entropy <= 1.0
    # the default monitor asks for no entropy
    assert not DriftMonitor(DriftConfig()).wants_confidence
