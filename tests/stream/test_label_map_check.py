"""A source's label_map and run.label_map that do not fit: refused at config time, and caught
at run time by the label guard when the settings cannot tell."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from learners.records import LearnerOutput
from perception.evaluator import EvaluatorConfig
from stream.cli import main
from stream.config import ConfigError, check_label_maps, load_config
from stream.evaluation import EvalMapper, FrameEvaluator
from stream.frame import GroundTruth
from stream.labelcheck import LabelGuard
from stream.sources.labelmaps import EVALUATION_SPACES, LABEL_MAPS

LOG = "camvid_0016E5_15hz"
S05 = "espnetv2_s0.5_cityscapes.safetensors"


def _config(source_map: str | None, run_map: str, kind: str = "images:some/frames"):
    source = kind + (f"?label_map={source_map}" if source_map else "")
    return load_config(None, [f"run.source={source}", f"run.label_map={run_map}"])


@pytest.mark.parametrize("source_map, run_map", [("camvid", "camvid"), ("cityscapes-ids", "camvid"), ("identity", "camvid"),
                                                 ("camvid-raw", ""), ("camvid-raw", "canonical")])
def test_a_pair_that_maps_the_labels_twice_is_refused_naming_both_settings(source_map, run_map):
    with pytest.raises(ConfigError) as error:
        _config(source_map, run_map)
    message = str(error.value)
    assert f"label_map={source_map}" in message and "images:some/frames" in message
    assert "run.label_map" in message and "nonsense" in message


@pytest.mark.parametrize("source_map, run_map", [("camvid-raw", "camvid"), (None, "camvid"), ("camvid", ""),
                                                 ("cityscapes-ids", "cityscapes"), (None, "")])
def test_pairs_that_fit_are_accepted(source_map, run_map):
    assert _config(source_map, run_map).run.label_map == run_map


def test_every_source_kind_with_options_is_checked():
    for kind in ("video:clip.mp4", "images:a/frames", "kitti:drive", "logs:a,b"):
        with pytest.raises(ConfigError, match=kind.split(":")[0]):
            _config("camvid", "camvid", kind)


def test_unknown_label_maps_are_refused_by_name():
    with pytest.raises(ConfigError, match="run.source .*unknown label map 'camvd'"):
        _config("camvd", "camvid")
    with pytest.raises(ConfigError, match="run.label_map: unknown evaluation label set 'camvd'"):
        _config(None, "camvd")


def test_the_check_runs_on_a_config_file_and_overrides_together(tmp_path):
    file = tmp_path / "log.toml"
    file.write_text('[run]\nsource = "images:/data/frames?label_map=camvid"\n')
    assert load_config(file).run.label_map == ""
    with pytest.raises(ConfigError, match="run.label_map=camvid"):
        load_config(file, ["run.label_map=camvid"])
    check_label_maps(load_config(file))  # callable on its own, by a driver


def test_evaluation_spaces_match_the_evaluation_mapper():
    classes = {"canonical": 19, "camvid": 11}
    for name, space in EVALUATION_SPACES.items():
        assert EvalMapper(name, EvaluatorConfig()).config.num_classes == classes[space]
    assert {m.space for m in LABEL_MAPS.values()} <= set(classes)


def test_the_cli_refuses_the_pair_before_any_frame_runs(tmp_path, capsys, shared_data):
    frames = shared_data / "logs" / LOG / "frames"
    out = tmp_path / "run"
    code = main(["run", "--source", f"images:{frames}?label_map=camvid", "--label-map", "camvid", "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "label_map=camvid" in err and "run.label_map=camvid" in err
    assert not out.exists()  # refused before the run folder was made


# --- the runtime guard, on the real CamVid frames and labels with the real s0.5 teacher -----------------------------
@pytest.fixture(scope="module")
def camvid_teacher_answers(shared_data):
    """(ground truth as CamVid ids 0..11, teacher canonical labels) for the first 10 frames."""
    import torch

    from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher
    from stream.sources.images import open_images

    torch.set_num_threads(1)
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(shared_data / "teachers" / S05), inference_size=(352, 480),
                                             device="cpu"))
    pairs = []
    with open_images(shared_data / "logs" / LOG / "frames") as source:
        for frame, _ in zip(source, range(10)):
            pairs.append((frame.label, teacher.label(frame.image[None]).labels[0]))
    return pairs


def _evaluate(pairs, source_map: str | None, run_map: str, source: str = "") -> FrameEvaluator:
    table = LABEL_MAPS[source_map] if source_map else None
    evaluator = FrameEvaluator(EvaluatorConfig(window=100), run_map, source)
    truths = [GroundTruth(i, "log", table(gt) if table else gt) for i, (gt, _) in enumerate(pairs)]
    outputs = [LearnerOutput(i, teacher, teacher) for i, (_, teacher) in enumerate(pairs)]
    for i in range(0, len(outputs), 3):
        evaluator.update(truths[i : i + 3], outputs[i : i + 3])
    return evaluator


@pytest.mark.shared_data
@pytest.mark.parametrize("source_map, run_map", [("camvid", "camvid"), (None, ""), ("camvid-raw", "")])
def test_the_guard_warns_loudly_when_the_labels_are_in_another_set(camvid_teacher_answers, source_map, run_map, caplog):
    source = f"images:{LOG}/frames" + (f"?label_map={source_map}" if source_map else "")
    with caplog.at_level(logging.WARNING, logger="stream.labelcheck"):
        evaluator = _evaluate(camvid_teacher_answers, source_map, run_map, source)
    summary = evaluator.summary()
    assert summary["teacher_miou"] < 0.02  # the nonsense score
    warning = summary["label_warning"]
    assert warning is not None and warning.startswith("LABELS DO NOT FIT")
    assert source in warning and "run.label_map" in warning
    assert evaluator.label_guard.agreement < 0.01
    assert [r.getMessage() for r in caplog.records] == [warning]  # once


@pytest.mark.shared_data
@pytest.mark.parametrize("source_map, run_map", [("camvid-raw", "camvid"), (None, "camvid"), ("camvid", "")])
def test_the_guard_is_quiet_when_the_labels_fit(camvid_teacher_answers, source_map, run_map, caplog):
    with caplog.at_level(logging.WARNING, logger="stream.labelcheck"):
        evaluator = _evaluate(camvid_teacher_answers, source_map, run_map)
    assert evaluator.summary()["label_warning"] is None
    assert evaluator.label_guard.decided and evaluator.label_guard.agreement > 0.7
    assert not caplog.records


def test_the_guard_waits_for_enough_labelled_frames_and_sees_out_of_range_labels():
    guard_evaluator = FrameEvaluator(EvaluatorConfig(window=100), "camvid", "images:x")
    out_of_range = np.full((4, 4), 13, np.uint8)  # canonical "car": no CamVid class
    teacher = np.full((4, 4), 13, np.uint8)
    for i in range(9):
        guard_evaluator.update([GroundTruth(i, "log", out_of_range)], [LearnerOutput(i, teacher, teacher)])
        assert guard_evaluator.label_guard.warning is None  # too early
    guard_evaluator.update([GroundTruth(9, "log", out_of_range)], [LearnerOutput(9, teacher, teacher)])
    warning = guard_evaluator.summary()["label_warning"]
    assert warning and "no ground-truth pixel is a class of the evaluation label set (0..10" in warning


def test_frames_without_a_teacher_answer_do_not_count():
    evaluator = FrameEvaluator(EvaluatorConfig(window=100), "")
    gt = np.zeros((4, 4), np.uint8)
    wrong = np.full((4, 4), 5, np.uint8)
    evaluator.update([GroundTruth(i, "log", gt) for i in range(20)],
                     [LearnerOutput(i, gt, wrong if i < 3 else None) for i in range(20)])
    assert evaluator.label_guard.warning is None and not evaluator.label_guard.decided  # 3 teacher frames: not yet
    with pytest.raises(ValueError, match="min_frames"):
        LabelGuard(min_frames=0)
