"""The learner's stream semantics, with a small deterministic teacher (no simulator needed)."""
import numpy as np
import pytest

from learners.monitor import DriftConfig
from learners.online import OnlineConfig
from learners.stream_learner import LocalTeacherClient, StreamLearner, StreamLearnerConfig
from perception.nets import STUDENT_CONFIG, SegNet
from stream.frame import Frame
import torch
from toy_teachers import BrightnessTeacher


def frames(n, dark_from=None):
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((32, 64, 3), np.uint8)
        split = 10 + int(rng.integers(0, 6))
        img[:split] = 200 if dark_from is None or i < dark_from else 60
        img[split:] = 30
        label = np.where(img.mean(-1) > 100, 10, 0).astype(np.uint8)
        yield Frame(img, i * 0.1, "toy", i, label=label, meta={"domain": "a" if dark_from is None or i < dark_from else "b"}).observation()


def make(tmp=None, teacher=None, **cfg):
    torch.manual_seed(0)
    model = SegNet(STUDENT_CONFIG)
    return StreamLearner(model, LocalTeacherClient(teacher or BrightnessTeacher()), seed=0,
                         config=StreamLearnerConfig(**cfg), online=OnlineConfig(batch_size=2, steps_per_label=1),
                         checkpoint_dir=tmp)


def run(learner, stream):
    records, results = [], []
    for f in stream:
        r = learner.step(f)
        results.append(r)
        records += r.outputs
    records += learner.flush().outputs
    return records, results


def test_every_frame_finalised_once_in_order_with_latency():
    learner = make(teacher_latency=3)
    records, results = run(learner, frames(30))
    assert [r.index for r in records] == list(range(30))
    asked = [r.index for r in results if r.asked_teacher]
    assert asked[0] == 0
    with_teacher = [r.index for r in records if r.teacher is not None]
    assert with_teacher == asked
    # frame 0's answer is applied only once frame 3 has been predicted
    assert [r.index for r in results[2].outputs] == []
    assert [r.index for r in results[3].outputs] == [0]


def test_out_of_order_frame_is_refused():
    learner = make()
    learner.step(next(frames(1)))
    with pytest.raises(ValueError, match="expected frame 1"):
        learner.step(next(frames(1)))


def _spy_on_call_order(learner):
    """Record ('predict' | 'learn', frame index) for every call the learner makes to its student;
    each frame's image carries its index in pixel (0, 0, 1)."""
    calls = []
    inner = learner.learner
    predict, learn = inner.predict, inner.learn

    def spy_predict(image, *args, **kwargs):
        calls.append(("predict", int(image[0, 0, 1])))
        return predict(image, *args, **kwargs)

    def spy_learn(image, *args, **kwargs):
        calls.append(("learn", int(image[0, 0, 1])))
        return learn(image, *args, **kwargs)

    inner.predict, inner.learn = spy_predict, spy_learn
    return calls


def indexed_frames(n):
    for seen in frames(n):
        image = seen.image.copy()
        image[0, 0, 1] = seen.index
        yield type(seen)(image, seen.index, seen.timestamp, seen.source_id)


def prequential_violations(calls):
    """Frames the student learned from before (or without) predicting them."""
    predicted, violations = set(), []
    for kind, index in calls:
        if kind == "predict":
            predicted.add(index)
        elif index not in predicted:
            violations.append(index)
    return violations


@pytest.mark.parametrize("latency", [0, 2])
def test_prediction_is_made_before_learning(latency):
    learner = make(teacher_latency=latency)
    calls = _spy_on_call_order(learner)
    outputs, results = run(learner, indexed_frames(12))
    learned = [index for kind, index in calls if kind == "learn"]
    assert learned == [r.index for r in results if r.asked_teacher]  # the spy saw every step
    assert prequential_violations(calls) == []
    for output in outputs:  # the reported prediction is the one made before learning
        assert output.student.shape == (32, 64)


def test_the_prequential_spy_can_fail():
    """A learner that learns from a frame before predicting it is caught by the same check."""
    assert prequential_violations([("learn", 0), ("predict", 0)]) == [0]
    learner = make(teacher_latency=0)
    calls = _spy_on_call_order(learner)
    inner = learner.learner
    honest_predict = inner.predict

    def learn_first(image):  # a dishonest order: learn from the teacher, then predict
        inner.learn(image, np.zeros(image.shape[:2], np.uint8), np.zeros((19, 4, 8), np.float32), 0)
        return honest_predict(image)

    inner.predict = learn_first
    run(learner, indexed_frames(3))
    assert prequential_violations(calls) != []


def test_the_learner_refuses_a_frame_with_ground_truth():
    learner = make()
    frame = Frame(np.zeros((32, 64, 3), np.uint8), 0.0, "toy", 0, label=np.zeros((32, 64), np.uint8))
    with pytest.raises(TypeError, match="ground truth must not reach the learner"):
        learner.step(frame)
    assert learner.step(frame.observation()).index == 0


def test_checkpoint_resume_gives_identical_records(tmp_path):
    straight, _ = run(make(tmp_path / "a", checkpoint_every=10), frames(40))
    first = make(tmp_path / "b", checkpoint_every=10)
    part = []
    for f in frames(40):
        if f.index == 25:
            break  # the process 'dies' after frame 24; its last checkpoint holds frames 0..19
        part += first.step(f).outputs
    resumed = make(tmp_path / "b", checkpoint_every=10)
    assert resumed.next_index == 20
    rest, _ = run(resumed, (f for f in frames(40) if f.index >= 20))
    merged = {r.index: r for r in part if r.index < 20}
    merged.update({r.index: r for r in rest})
    assert sorted(merged) == list(range(40))
    for r in straight:
        assert np.array_equal(merged[r.index].student, r.student), r.index
    assert len(list((tmp_path / "b").glob("learner_*.safetensors"))) == 2


def test_drift_raises_teacher_rate():
    learner = make(teacher_latency=1)
    _, results = run(learner, frames(160, dark_from=100))
    drifts = [e for r in results for e in r.events if e["kind"] == "drift"]
    assert drifts and 100 <= drifts[0]["index"] <= 150
    after = next(r for r in results if r.index == drifts[0]["index"])
    assert after.teacher_rate == pytest.approx(learner.scheduler.config.max_rate)
