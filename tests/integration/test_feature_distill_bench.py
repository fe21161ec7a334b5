"""bench/feature_distill.py end to end at toy size, and its comparison of two arms."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import feature_distill  # noqa: E402


def test_compare_gives_the_feature_arm_minus_logits_overall_and_per_domain():
    base = {"student_miou": 0.5, "student_teacher_ratio": 0.8,
            "per_domain": {"a": {"student_miou": 0.6, "student_teacher_ratio": 0.9},
                           "b": {"student_miou": 0.4, "student_teacher_ratio": None}}}
    arm = {"student_miou": 0.49, "student_teacher_ratio": 0.82,
           "per_domain": {"a": {"student_miou": 0.65, "student_teacher_ratio": 0.95},
                          "b": {"student_miou": 0.38, "student_teacher_ratio": 0.5}}}
    diff = feature_distill.compare(arm, base)
    assert diff["miou"] == pytest.approx(-0.01) and diff["ratio"] == pytest.approx(0.02)
    assert diff["per_domain"]["a"]["miou"] == pytest.approx(0.05) and diff["per_domain"]["b"]["ratio"] is None
    assert diff["min_domain_miou"] == pytest.approx(-0.02) and diff["max_domain_miou"] == pytest.approx(0.05)


def test_the_bench_runs_end_to_end_and_ends_with_one_json_line(tmp_path, capsys):
    feature_distill.main(["--frames", "12", "--weights", "1", "--cost-frames", "2", "--out", str(tmp_path),
                          "--set", "sim.width=64", "--set", "sim.height=32", "--set", "online.steps_per_label=1",
                          "--set", "scheduler.initial_rate=0.5"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("settings", "logits", "features_w1", "cost", "headline"):
        assert key in last, key
    for key in ("student_miou", "student_teacher_ratio", "per_domain", "wall_s"):
        assert key in last["logits"] and key in last["features_w1"], key
    assert set(last["features_w1"]["vs_logits"]) >= {"miou", "ratio", "per_domain"}
    for key in ("logits_ms_per_step", "features_ms_per_step", "step_cost_ratio", "replay_bytes_per_frame_features"):
        assert last["cost"][key] is not None and last["cost"][key] > 0, key
    assert last["headline"]["arm"] == "features_w1"
    assert last["cost"]["replay_bytes_per_frame_features"] == 96 * 4 * 8 * 2  # float16 decoder map at stride 8
    assert (tmp_path / "features_w1" / "checkpoints").is_dir() or (tmp_path / "features_w1" / "summary.json").is_file()
