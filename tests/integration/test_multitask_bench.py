"""bench/multitask.py end to end at toy size, and its comparison by hand."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import multitask  # noqa: E402


def test_compare_by_hand():
    seg = {"student_miou": 0.5, "per_domain_miou": {"a": 0.6, "b": 0.4}}
    both = {"student_miou": 0.52, "per_domain_miou": {"a": 0.55, "b": 0.45},
            "teacher_depth_abs_rel_on_teacher_frames": 0.1, "student_depth_abs_rel_on_teacher_frames": 0.15}
    out = multitask.compare(seg, both)
    assert out["miou_delta"] == pytest.approx(0.02) and out["miou_ratio"] == pytest.approx(1.04)
    assert out["per_domain_miou_delta"] == {"a": pytest.approx(-0.05), "b": pytest.approx(0.05)}
    assert out["depth_abs_rel_ratio_student_to_teacher"] == pytest.approx(1.5)


def test_the_bench_runs_end_to_end_and_ends_with_one_json_line(tmp_path, capsys):
    multitask.main(["--frames", "16", "--set", "online.steps_per_label=1", "--set", "evaluator.window=8",
                    "--set", "learner.teacher_latency=1", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("settings", "seg", "seg_depth", "miou_delta", "miou_ratio", "per_domain_miou_delta",
                "depth_abs_rel_ratio_student_to_teacher"):
        assert key in last, key
    for key in ("student_miou", "per_domain_miou", "teacher_rate"):
        assert key in last["seg"] and key in last["seg_depth"], key
    depth = last["seg_depth"]
    assert 0 < depth["student_depth_abs_rel"] < 10 and 0 < depth["teacher_depth_abs_rel_on_teacher_frames"] < 10
    assert depth["per_domain_depth_abs_rel"] and "student_depth_abs_rel" not in last["seg"]
    assert set(last["per_domain_miou_delta"]) == set(last["seg"]["per_domain_miou"])
