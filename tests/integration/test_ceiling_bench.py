"""bench/ceiling.py end to end at toy sizes, and its figures from a summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import ceiling  # noqa: E402


def test_figures_compare_online_to_ceiling_and_teacher_per_domain():
    summary = {"student_miou": 0.6, "student_teacher_ratio": 0.9, "teacher_rate": 0.08, "teacher_calls": 8, "wall_s": 1.0,
               "per_domain": {"a": {"student_miou": 0.7, "student_teacher_ratio": 0.95, "frames": 5},
                              "b": {"student_miou": 0.5, "student_teacher_ratio": 0.85, "frames": 5}}}
    ceiling_scores = {"miou": 0.62, "per_domain": {"a": 0.7, "b": 0.55}}
    teacher = {"miou": 0.8, "per_domain": {"a": 0.8, "b": 0.8}}
    figures = ceiling.net_figures("default", summary, ceiling_scores, teacher)
    assert figures["student_vs_ceiling"] == pytest.approx(0.6 / 0.62)
    assert figures["student_vs_ceiling_min"] == pytest.approx(0.5 / 0.55)
    assert figures["per_domain"]["a"]["online_vs_ceiling"] == pytest.approx(1.0)
    judged = ceiling.targets(figures)
    assert not judged["vs_ceiling"]["holds"]  # domain b is at 0.909x
    assert not judged["vs_teacher"]["holds"]  # 0.90 < 0.92
    figures.update(student_vs_ceiling=0.97, student_vs_ceiling_min=0.96, student_vs_teacher=0.93)
    assert all(v["holds"] for v in ceiling.targets(figures).values())
    figures["teacher_rate"] = 0.2
    assert not ceiling.targets(figures)["vs_teacher"]["holds"]


def test_the_bench_runs_end_to_end_and_ends_with_one_json_line(tmp_path, capsys):
    ceiling.main(["--nets", "tiny", "--frames", "24", "--ceiling-steps", "2", "--start-steps", "2",
                  "--ceiling-frames", "24", "--start-frames", "24", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("student_vs_ceiling", "student_vs_ceiling_min", "student_vs_teacher", "teacher_rate", "sizing", "targets"):
        assert key in last, key
    assert last["net"] == "tiny" and last["sizing"][0]["net"] == "tiny"
    assert set(last["sizing"][0]["ms"]) == {"256x128", "480x352"}
    assert (tmp_path / "ceiling.png").is_file() and (tmp_path / "sizing.json").is_file()
    assert (tmp_path / "nets" / "tiny" / "ceiling-2.safetensors").is_file()


def test_bad_nets_are_refused():
    with pytest.raises(SystemExit):
        ceiling.parse_args(["--nets", "huge"])
