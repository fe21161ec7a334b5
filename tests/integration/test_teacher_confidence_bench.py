"""bench/teacher_confidence.py end to end at toy size, and its figures from made-up scores."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import teacher_confidence  # noqa: E402


def test_figures_average_the_hard_domains_and_compare_to_the_baseline():
    teachers = {"plain": {"miou": 0.7, "frames": 4, "ms_per_frame": 10.0, "name": "sim",
                          "per_domain": {"clear@oldtown": 0.8, "fog@oldtown": 0.6, "night@oldtown": 0.4}},
                "tta": {"miou": 0.75, "frames": 4, "ms_per_frame": 60.0, "name": "sim+tta6",
                        "per_domain": {"clear@oldtown": 0.81, "fog@oldtown": 0.66, "night@oldtown": 0.5}}}

    def run(fog, night):
        return {"student_miou": 0.6, "student_teacher_ratio": 0.9, "teacher_rate": 0.2, "teacher_calls": 2,
                "teacher_ms_per_call": 12.0, "wall_s": 1.0,
                "per_domain": {"clear@oldtown": {"student_miou": 0.7, "student_teacher_ratio": 0.9, "frames": 2},
                               "fog@oldtown": {"student_miou": fog, "student_teacher_ratio": 0.8, "frames": 2},
                               "night@oldtown": {"student_miou": night, "student_teacher_ratio": 0.7, "frames": 2}}}

    result = teacher_confidence.figures(teachers, {"baseline": run(0.5, 0.3), "both": run(0.55, 0.35)}, {})
    assert result["hard_domains"] == ["fog@oldtown", "night@oldtown"]
    assert result["teacher_miou_hard"]["plain"] == pytest.approx(0.5)
    assert result["teacher_miou_hard"]["tta"] == pytest.approx(0.58)
    assert result["teacher_tta_cost"] == pytest.approx(6.0)
    assert result["student_miou_hard"] == {"baseline": pytest.approx(0.4), "both": pytest.approx(0.45)}
    assert result["student_gain_hard"]["both"] == pytest.approx(0.05)
    assert result["student_vs_plain_teacher_hard"]["baseline"] == pytest.approx(0.8)
    assert not result["per_domain"]["clear@oldtown"]["hard"] and result["per_domain"]["night@oldtown"]["hard"]


def test_the_bench_runs_end_to_end_and_ends_with_one_json_line(tmp_path, capsys):
    teacher_confidence.main(["--frames", "24", "--teacher-every", "4", "--tta", "flip", "--teacher-tta", "flip+scales", "--out", str(tmp_path),
                             "--set", "online.steps_per_label=1", "--set", "online.batch_size=2",
                             "--set", "learner.checkpoint_every=0", "--set", "teacher.device=cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    last = json.loads(lines[-1])
    for key in ("teacher_miou_hard", "student_miou_hard", "teacher_ms_per_frame", "student_teacher_ratio_hard",
                "per_domain", "hard_domains", "teacher_tta_cost", "student_gain_hard"):
        assert key in last, key
    assert set(last["teacher_miou_hard"]) == {"plain", "flip", "flip+scales", "tta"}
    assert last["teacher_miou_hard"]["tta"] == last["teacher_miou_hard"]["flip"]
    assert set(last["student_miou_hard"]) == {"baseline", "confidence", "tta", "both"}
    assert last["hard_domains"] == ["fog@oldtown", "night@oldtown"]
    assert last["teacher_ms_per_frame"]["tta"] > 0 and last["teacher_ms_per_frame"]["plain"] > 0
    assert (tmp_path / "teacher_confidence.png").is_file()


def test_bad_runs_are_refused():
    with pytest.raises(SystemExit):
        teacher_confidence.parse_args(["--runs", "baseline,magic"])


def test_a_finished_run_is_reused_only_for_the_same_config(tmp_path):
    from stream.config import load_config

    config = load_config(None, [f"run.out={tmp_path}", "run.frames=12"])
    assert teacher_confidence.reused_run(config) is None
    (tmp_path / "config.json").write_text(config.to_json())
    summary = {"frames": 12, "student_miou": 0.5, "student_teacher_ratio": 0.9, "teacher_rate": 0.25, "teacher_calls": 3,
               "wall_s": 2.0, "per_domain": {"fog@oldtown": {"student_miou": 0.4, "student_teacher_ratio": 0.8, "frames": 12}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    row = teacher_confidence.reused_run(config)
    assert row["student_miou"] == 0.5 and row["teacher_ms_per_call"] is None
    other = load_config(None, [f"run.out={tmp_path}", "run.frames=12", "distill.confidence_weighting=entropy"])
    assert teacher_confidence.reused_run(other) is None
