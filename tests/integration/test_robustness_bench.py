"""bench/robustness.py's bookkeeping: which PGD figure counts, and how the targets are judged."""
from __future__ import annotations

import pytest

from bench.robustness import counted, judge, strong_enough


def gap(value: float) -> dict[str, float]:
    return {"pgd50_minus_pgd10": value, "pgd10_miou": 0.5, "pgd50_miou": 0.5 + value, "frames": 12}


def test_pgd10_counts_while_pgd50_stays_within_two_points() -> None:
    assert counted(0.40, gap(-0.019)) == 0.40
    assert counted(0.40, gap(0.01)) == 0.40  # a stronger attack that did worse changes nothing


def test_pgd50_counts_when_pgd10_proves_too_weak() -> None:
    assert counted(0.40, gap(-0.05)) == pytest.approx(0.35)
    assert counted(None, gap(-0.05)) is None


def row(plain4: float, robust4: float, plain_gap: float, robust_gap: float) -> dict[str, float]:
    return {"plain_pgd4_miou_counted": counted(plain4, gap(plain_gap)),
            "robust_pgd4_miou_counted": counted(robust4, gap(robust_gap)),
            "plain_pgd50_minus_pgd10": plain_gap, "pgd50_minus_pgd10": robust_gap,
            "robust_clean_miou_on_robust_frames": 0.7, "plain_clean_miou": 0.75, "robust_clean_miou": 0.73,
            "plain_worstk_miou": 0.2, "robust_worstk_miou": 0.3}


def test_targets_are_judged_on_both_students_counted_figures() -> None:
    # on the stream figures the robust student is 2.4x the plain one; PGD-50 takes 10 points off
    # the robust student and none off the plain one, so it is 1.8x as counted: the target fails
    verdict = judge(row(0.15, 0.36, 0.0, -0.10))
    assert verdict["pgd4_at_least_2x_plain"] is False
    assert verdict["pgd4_at_least_0.4x_own_clean"] is False  # 0.26 < 0.4 * 0.7
    assert verdict["clean_at_most_3_points_below"] and verdict["worstk_at_least_5_points_above"]
    # the same stronger attack lowers the plain student too: 0.26 / 0.12 holds
    assert judge(row(0.15, 0.36, -0.03, -0.10))["pgd4_at_least_2x_plain"] is True


def test_attack_check_names_the_student_whose_pgd10_was_too_weak() -> None:
    assert strong_enough(row(0.15, 0.36, -0.01, -0.10)) == {"pgd10_strong_enough_plain": True,
                                                           "pgd10_strong_enough_robust": False}


def test_reuse_reads_back_only_a_finished_run_with_the_same_config(tmp_path, monkeypatch) -> None:
    import json
    import os

    import stream.local
    from bench.robustness import run_or_reuse
    from stream.config import load_config

    ran = []
    monkeypatch.setattr(stream.local, "run_local", lambda config, **kwargs: ran.append(config) or {"fresh": True})
    config = load_config(None, [f"run.out={tmp_path}", "run.frames=20"])
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(config.to_json())
    (tmp_path / "summary.json").write_text(json.dumps({"kept": True}))
    (tmp_path / "checkpoints" / "learner_00000020.safetensors").write_bytes(b"")
    assert run_or_reuse(config, reuse=True) == {"kept": True} and not ran
    assert run_or_reuse(config, reuse=False) == {"fresh": True}  # reuse is asked for, never assumed
    other = load_config(None, [f"run.out={tmp_path}", "run.frames=30"])
    assert run_or_reuse(other, reuse=True) == {"fresh": True}  # another setting: run again
    os.utime(tmp_path / "summary.json", (1, 1))  # a run that started after the summary was written and stopped
    assert run_or_reuse(config, reuse=True) == {"fresh": True}
