"""The closed loop through the stream: SimSource.steer and its errors, the driving stats and
lane-departure events, Ingest.steer, the config's refusals, a tiny closed-loop run end to end,
the frozen learner, and the per-visit scores (VisitScores, summary["visits"])."""
from __future__ import annotations

import json
import math
from collections import deque

import cv2
import numpy as np
import pytest
import torch

from learners.records import LearnerOutput, Observation
from learners.stream_learner import LocalTeacherClient
from perception.evaluator import EvaluatorConfig
from sim.control import LaneKeeperConfig
from sim.world import CameraImage, SimConfig, Transform
from stream.config import ConfigError, load_config
from stream.evaluation import FrameEvaluator, VisitScores
from stream.frame import GroundTruth
from stream.ingest import Ingest
from stream.local import run_local
from stream.parts import LearnerPart
from stream.sources.base import SourceError
from stream.sources.sim import SimSource, _image_of

from flat_teacher import FlatTeacher

CFG = SimConfig(width=64, height=32)
SKY = 10


def closed(frames: int = 5, schedule: str = "clear@oldtown", seed: int = 0) -> SimSource:
    return SimSource(CFG, seed=seed, frames=frames, schedule=schedule, closed_loop=LaneKeeperConfig())


def road_map(width: int, height: int, centre_m: float, road_m: float, fov: float = 90.0,
             camera_height: float = 1.4) -> np.ndarray:
    """A flat straight road ``road_m`` wide, its centre ``centre_m`` right of the camera; sky elsewhere."""
    focal = (width / 2) / math.tan(math.radians(fov) / 2)
    labels = np.full((height, width), SKY, np.uint8)
    for v in range(height):
        below = v + 0.5 - height / 2
        if below > 0:
            ahead = camera_height * focal / below
            across = (np.arange(width) + 0.5 - width / 2) * ahead / focal
            labels[v, np.abs(across - centre_m) <= road_m / 2] = 0
    return labels


# ---- SimSource.steer ------------------------------------------------------------------------------
def test_steer_needs_a_closed_loop_source():
    src = SimSource(CFG, seed=0, frames=3, schedule="clear@oldtown")
    frame = next(iter(src))
    with pytest.raises(SourceError, match="closed-loop"):
        src.steer(frame.index, frame.label)
    assert "driving" not in src.stats()  # open loop: no driving record
    src.close()


def test_steer_before_the_source_started_is_refused():
    src = closed()
    with pytest.raises(SourceError, match="has started"):
        src.steer(0, np.zeros((32, 64), np.uint8))
    assert "driving" not in src.stats()  # nothing driven yet


def test_steer_must_name_the_frame_read_last():
    src = closed()
    frames = iter(src)
    first = next(frames)
    with pytest.raises(SourceError, match="frame read last is 0"):
        src.steer(1, first.label)  # a frame not rendered yet
    assert src.steer(0, first.label) == src._world.ego.get_control().steer
    second = next(frames)
    with pytest.raises(SourceError, match="frame read last is 1"):
        src.steer(0, first.label)  # a stale prediction
    src.steer(second.index, second.label)
    assert src.stats()["driving"]["steered_frames"] == 2
    with pytest.raises(SourceError, match="frame 1 has steered the ego already"):
        src.steer(second.index, second.label)


def test_the_driving_stats_count_ticks_steers_and_frames_rendered_unsteered():
    src = closed(frames=5)
    sky = np.full((32, 64), SKY, np.uint8)
    for frame in src:
        if frame.index in (0, 2):
            src.steer(frame.index, sky)
    driving = src.stats()["driving"]
    assert driving["controlled_frames"] == 5  # every tick was steered (autopilot off), held or not
    assert driving["steered_frames"] == 2 and driving["blind_frames"] == 2
    assert driving["unsteered_frames"] == 2  # frames 2 and 4 were rendered before frames 1 and 3 steered
    assert set(driving) >= {"lane_departures", "seconds_off_road", "seconds_out_of_lane", "min_car_clearance_m",
                            "max_lane_offset_m"}


def test_steering_every_frame_leaves_none_unsteered_and_follows_the_prediction():
    src = closed(frames=4)
    commands = []
    for frame in src:
        commands.append(src.steer(frame.index, road_map(64, 32, 1.5, 10.6)))  # oldtown: one 10.6 m span, lane 3.05 m right
    assert src.stats()["driving"]["unsteered_frames"] == 0
    assert all(c > 0 for c in commands)  # a road right of the car: steer right
    assert commands == sorted(commands)  # smoothing: the command builds up towards the wanted one


def test_a_misleading_prediction_drives_out_of_the_lane_and_each_departure_is_an_event():
    src = closed(frames=60, schedule="clear@newtown", seed=1)
    wrong = road_map(64, 32, 2.0, 7.0)  # newtown's carriageway (7 m), always 2 m right of where it is
    for frame in src:
        src.steer(frame.index, wrong)
    driving = src.stats()["driving"]
    departures = [e for e in src.events if e["kind"] == "lane_departure"]
    assert driving["lane_departures"] >= 1 and driving["seconds_out_of_lane"] > 0
    assert len(departures) == driving["lane_departures"]
    assert [e["count"] for e in departures] == list(range(1, len(departures) + 1))
    assert all(0 < e["index"] < 60 for e in departures)


def test_the_same_predictions_give_the_same_drive():
    def drive() -> dict:
        src = closed(frames=30, schedule="clear@newtown", seed=2)
        for frame in src:
            src.steer(frame.index, frame.label)
        return src.stats()["driving"]

    assert drive() == drive()


def test_cameras_are_matched_by_tick_frame_number():
    def image(frame: int) -> CameraImage:
        return CameraImage("sensor.camera.rgb", frame, frame / 10, 90.0, Transform(), np.full((2, 2, 3), frame, np.uint8))

    queue = deque([image(3), image(4), image(5), image(6)])
    assert _image_of(queue, 5, "rgb").frame == 5
    assert [i.frame for i in queue] == [6]  # older images dropped, newer kept
    with pytest.raises(SourceError, match="no image for tick 9"):
        _image_of(queue, 9, "sensor.camera.rgb")


# ---- Ingest.steer and the config -------------------------------------------------------------------
def test_ingest_steer_refuses_a_source_that_cannot_be_steered(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((32, 64, 3), 40 * i, np.uint8))
    ingest = Ingest(load_config(None, [f"run.source=images:{folder}", "run.frames=3"]))
    try:
        _, _, manifest = ingest.read(1)
        with pytest.raises(RuntimeError, match="cannot be steered"):
            ingest.steer(manifest.frames[0].index, np.zeros((32, 64), np.uint8))
    finally:
        ingest.close()


def test_ingest_steer_refuses_to_steer_while_decoding_ahead():
    config = load_config(None, ["sim.width=64", "sim.height=32", "run.frames=4", "run.source=sim:clear@oldtown",
                                "run.closed_loop=true"])
    ingest = Ingest(config, prefetch=2)
    try:
        _, _, manifest = ingest.read(1)
        with pytest.raises(RuntimeError, match="decodes ahead"):
            ingest.steer(manifest.frames[0].index, np.zeros((32, 64), np.uint8))
    finally:
        ingest.close()


def test_ingest_steer_reaches_the_closed_loop_sim_source():
    config = load_config(None, ["sim.width=64", "sim.height=32", "run.frames=3", "run.source=sim:clear@oldtown",
                                "run.closed_loop=true"])
    ingest = Ingest(config)
    try:
        for _ in range(3):
            _, _, manifest = ingest.read(1)
            steer = ingest.steer(manifest.frames[0].index, road_map(64, 32, -4.0, 10.6))
            assert -1.0 <= steer < 0.0  # oldtown's lane lies 1.55 m right of the road centre: here 2.45 m left
        driving = ingest.stats()["driving"]
        assert driving["steered_frames"] == 3 and driving["unsteered_frames"] == 0
    finally:
        ingest.close()


def test_an_open_loop_sim_source_refuses_steering_through_the_ingest():
    ingest = Ingest(load_config(None, ["sim.width=64", "sim.height=32", "run.frames=2", "run.source=sim:clear@oldtown"]))
    try:
        _, _, manifest = ingest.read(1)
        with pytest.raises(SourceError, match="closed-loop"):
            ingest.steer(manifest.frames[0].index, np.zeros((32, 64), np.uint8))
        assert "driving" not in ingest.stats()
    finally:
        ingest.close()


@pytest.mark.parametrize("overrides, message", [
    (["run.closed_loop=true", "run.runner=ray"], r"closed_loop needs the in-process runner"),
    (["run.closed_loop=true", "run.source=video:clip.mp4"], r"closed_loop steers the built-in simulator.*video:"),
    (["run.closed_loop=true", "run.source=images:frames"], r"closed_loop steers the built-in simulator.*images:"),
])
def test_the_config_refuses_a_closed_loop_it_cannot_run(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_the_config_accepts_a_local_sim_closed_loop():
    config = load_config(None, ["run.closed_loop=true", "run.source=sim:clear@oldtown"])
    assert config.run.closed_loop and config.run.runner == "local"
    assert load_config(None, []).run.closed_loop is False


# ---- a tiny run, end to end -------------------------------------------------------------------------
def test_a_closed_loop_run_steers_every_frame_and_reports_its_driving(tmp_path):
    frames = 40
    run = tmp_path / "run"
    config = load_config(None, ["sim.width=64", "sim.height=32", f"run.frames={frames}", "run.source=sim:clear@oldtown",
                                "run.closed_loop=true", f"run.out={run}", "evaluator.window=20",
                                "evaluator.robust_every=0"])
    summary = run_local(config, progress=False)
    assert summary["frames"] == frames
    driving = summary["driving"]
    assert driving["controlled_frames"] == frames and driving["steered_frames"] == frames
    assert driving["unsteered_frames"] == 0 and 0 <= driving["blind_frames"] <= frames
    assert json.loads((run / "summary.json").read_text())["driving"] == driving
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "lane_departure" for e in events) == driving["lane_departures"]
    (visit,) = summary["visits"]
    assert (visit["domain"], visit["start"], visit["frames"]) == ("clear@oldtown", 0, frames)
    assert 0.0 <= visit["miou"] <= 1.0
    assert visit["head_miou"] == visit["tail_miou"] == visit["miou"]  # 40 frames < visit_frames=50: one span


def test_an_open_loop_run_has_one_visit_per_domain_run_and_no_driving(tmp_path):
    config = load_config(None, ["sim.width=64", "sim.height=32", "run.frames=30", f"run.out={tmp_path / 'run'}",
                                "run.source=sim:clear@oldtown,fog@oldtown,clear@oldtown", "evaluator.window=10",
                                "evaluator.visit_frames=4", "evaluator.robust_every=0"])
    summary = run_local(config, progress=False)
    assert "driving" not in summary
    visits = summary["visits"]
    assert [(v["domain"], v["start"], v["frames"]) for v in visits] == [
        ("clear@oldtown", 0, 10), ("fog@oldtown", 10, 10), ("clear@oldtown", 20, 10)]
    for v in visits:
        assert {"miou", "head_miou", "tail_miou"} <= set(v)
        assert all(v[k] is None or 0.0 <= v[k] <= 1.0 for k in ("miou", "head_miou", "tail_miou"))
    assert sum(v["frames"] for v in visits) == summary["frames"]


# ---- the learner part: predictions kept only in closed loop; a frozen learner --------------------------
LEARNER = ["sim.width=64", "sim.height=32", "learner.teacher_latency=1", "scheduler.initial_rate=1.0",
           "scheduler.min_rate=1.0", "scheduler.max_rate=1.0", "online.steps_per_label=1", "online.batch_size=2",
           "online.crop=[0,0]"]


def observations(n: int) -> list[Observation]:
    rng = np.random.default_rng(0)
    return [Observation(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), i, i / 10, "cam") for i in range(n)]


def weights(part: LearnerPart) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in part.learner.learner.model.state_dict().items()}


def run_part(overrides: list[str], frames: int = 6) -> tuple[LearnerPart, FlatTeacher, dict, list, list[LearnerOutput]]:
    teacher = FlatTeacher()
    part = LearnerPart(load_config(None, LEARNER + overrides), LocalTeacherClient(teacher))
    before = weights(part)
    results, outputs = part.step([observations(frames)], list(range(frames)))
    outputs += part.flush()[1]
    return part, teacher, before, results, outputs


def test_the_learner_part_keeps_predictions_only_in_closed_loop():
    _, _, _, results, _ = run_part(["evaluator.robust_every=0"], frames=3)
    assert all(r.prediction is None for r in results)
    _, _, _, results, outputs = run_part(["evaluator.robust_every=0", "run.closed_loop=true"], frames=3)
    assert all(r.prediction is not None and r.prediction.shape == (32, 64) and r.prediction.dtype == np.uint8
               for r in results)
    for r, o in zip(results, outputs):
        np.testing.assert_array_equal(r.prediction, o.student)  # what steers is what is scored


def test_a_frozen_learner_never_asks_the_teacher_nor_steps():
    part, teacher, before, results, outputs = run_part(["learner.frozen=true", "evaluator.robust_every=0"], frames=8)
    learner = part.learner
    assert learner.teacher_calls == 0 and teacher.calls == 0
    assert not any(r.asked_teacher for r in results)
    assert learner.learner.steps == 0 and all(r.losses == [] for r in results)
    after = weights(part)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics too
    assert [o.index for o in outputs] == list(range(8)) and all(o.teacher is None for o in outputs)
    assert all(o.student is not None and o.student.shape == (32, 64) for o in outputs)  # it still predicts


def test_the_same_learner_unfrozen_asks_and_steps():
    """The control for the frozen test: the same frames and settings do change the weights."""
    part, teacher, before, _, outputs = run_part(["evaluator.robust_every=0"], frames=8)
    assert part.learner.teacher_calls == 8 and teacher.calls == 8 and part.learner.learner.steps >= 8
    after = weights(part)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(o.teacher is not None for o in outputs)


def test_a_frozen_learner_still_labels_and_scores_its_robustness_frames():
    part, teacher, before, results, outputs = run_part(
        ["learner.frozen=true", "evaluator.robust_every=3", "evaluator.robust_eps=4/255", "evaluator.robust_steps=1",
         "evaluator.corruptions=", "evaluator.worst_k=0"], frames=7)
    probed = [0, 3, 6]
    assert part.learner.teacher_calls == len(probed) == teacher.calls
    assert [r.index for r in results if r.asked_teacher] == probed
    assert part.learner.learner.steps == 0
    after = weights(part)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [o.index for o in outputs if o.teacher is not None] == probed
    assert [o.index for o in outputs if o.robust is not None] == probed


# ---- VisitScores ---------------------------------------------------------------------------------------
LABEL = np.array([[0, 1], [0, 1]], np.uint8)
RIGHT = LABEL.copy()
WRONG = (1 - LABEL).astype(np.uint8)
HALF = np.zeros((2, 2), np.uint8)  # class 0 IoU 2/4, class 1 IoU 0/2


def test_visits_split_by_domain_runs_with_head_and_tail_over_edge_frames():
    visits = VisitScores(num_classes=2, ignore_index=255, edge=2)
    for domain, pred in [("a", RIGHT), ("a", RIGHT), ("a", WRONG), ("a", WRONG), ("b", WRONG),
                         ("a", RIGHT), ("a", HALF), ("a", RIGHT)]:
        visits.update(domain, pred, LABEL)
    summary = visits.summary()
    assert [(v["domain"], v["start"], v["frames"]) for v in summary] == [("a", 0, 4), ("b", 4, 1), ("a", 5, 3)]
    first, second, back = summary
    assert (first["head_miou"], first["tail_miou"]) == (1.0, 0.0)  # learned first, then lost it
    assert first["miou"] == pytest.approx(1 / 3, abs=1e-6)  # per class: 4 right of 4 + 4 + 4
    assert (second["miou"], second["head_miou"], second["tail_miou"]) == (0.0, 0.0, 0.0)
    # the return: head = RIGHT + HALF, tail = HALF + RIGHT, whole = RIGHT + HALF + RIGHT
    assert back["head_miou"] == back["tail_miou"] == pytest.approx((4 / 6 + 2 / 4) / 2, abs=1e-6)
    assert back["miou"] == pytest.approx((6 / 8 + 4 / 6) / 2, abs=1e-6)


def test_the_open_visit_is_summarised_as_it_stands_and_keeps_growing():
    visits = VisitScores(num_classes=2, ignore_index=255, edge=1)
    visits.update("a", RIGHT, LABEL)
    (open_visit,) = visits.summary()
    assert open_visit["frames"] == 1 and open_visit["miou"] == 1.0
    open_visit["miou"] = -1.0  # a copy: the summary cannot be edited from outside
    visits.update("a", WRONG, LABEL)
    (grown,) = visits.summary()
    assert grown["frames"] == 2 and grown["head_miou"] == 1.0 and grown["tail_miou"] == 0.0
    assert 0.0 < grown["miou"] < 1.0
    visits.update("b", RIGHT, LABEL)  # closes "a" with its figures as they were
    closed_a, open_b = visits.summary()
    assert closed_a == grown and open_b["domain"] == "b" and open_b["start"] == 2


def test_visits_ignore_the_ignore_index_and_say_none_without_any_pixel():
    visits = VisitScores(num_classes=2, ignore_index=255, edge=1)
    ignored = np.array([[0, 255], [0, 255]], np.uint8)
    visits.update("a", np.array([[0, 0], [0, 0]], np.uint8), ignored)  # the wrong pixels are ignored
    assert visits.summary()[0]["miou"] == 1.0
    visits.update("b", RIGHT, np.full((2, 2), 255, np.uint8))
    assert visits.summary()[1]["miou"] is None


@pytest.mark.parametrize("edge", [0, -3])
def test_visits_refuse_an_edge_below_one_frame(edge):
    with pytest.raises(ValueError, match="edge must be >= 1"):
        VisitScores(num_classes=2, ignore_index=255, edge=edge)


def test_the_frame_evaluator_summary_has_the_visits():
    evaluator = FrameEvaluator(EvaluatorConfig(window=2, visit_frames=1))
    truths = [GroundTruth(i, d, LABEL) for i, d in enumerate("aab")]
    outputs = [LearnerOutput(i, p, None) for i, p in enumerate([RIGHT, WRONG, RIGHT])]
    evaluator.update(truths, outputs)
    visits = evaluator.summary()["visits"]
    assert [(v["domain"], v["start"], v["frames"], v["head_miou"], v["tail_miou"]) for v in visits] == [
        ("a", 0, 2, 1.0, 0.0), ("b", 2, 1, 1.0, 1.0)]
    with pytest.raises(ValueError, match="visit_frames must be an int >= 1"):
        EvaluatorConfig(visit_frames=0)


def test_visits_follow_the_stream_when_some_frames_have_no_label():
    evaluator = FrameEvaluator(EvaluatorConfig(window=100, visit_frames=1))
    domains = ["a", "a", "b", "a", "b"]
    labels = [LABEL, None, None, LABEL, LABEL]  # a sparse-labelled log: frames 1 and 2 have no ground truth
    evaluator.update([GroundTruth(i, d, l) for i, (d, l) in enumerate(zip(domains, labels))],
                     [LearnerOutput(i, RIGHT, None) for i in range(5)])
    visits = evaluator.summary()["visits"]
    assert [v["domain"] for v in visits] == ["a", "b", "a", "b"]
    assert visits[-1]["start"] == 4
