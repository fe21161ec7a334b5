"""Robustness end to end: views made on the teacher's side, robust distillation, robust mIoU on
the stream in the summary, the windows and the report; the same figures under Ray."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.evaluator import EvaluatorConfig
from stream.config import load_config
from stream.local import run_local

ROBUST = ["adversarial.enabled=true", "adversarial.sync_every=3", "robust.loss=trades", "evaluator.robust_every=20",
          "evaluator.robust_steps=3", "evaluator.worst_k=3", "evaluator.corruptions=rain,gamma,shake"]


def config(tmp_path, name, *extra):
    return load_config(None, ["run.frames=60", f"run.out={tmp_path / name}", "evaluator.window=30",
                              "sim.width=128", "sim.height=64", "online.crop=64,96", "online.steps_per_label=3",
                              *ROBUST, *extra])


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robust")
    return folder, run_local(config(folder, "local"), progress=False)


def test_a_robust_run_reports_robust_miou_everywhere(robust_run):
    folder, summary = robust_run
    assert summary["robust_frames"] == 3  # frames 0, 20, 40
    assert set(summary["student_robust_miou"]) == {"2/255", "4/255", "8/255"}
    assert set(summary["student_corrupt_miou"]) == {"rain", "gamma", "shake", "worst_of_k"}
    assert set(summary["student_robust_miou_vs_teacher"]) == {"2/255", "4/255", "8/255"}
    for value in [*summary["student_robust_miou"].values(), *summary["student_corrupt_miou"].values()]:
        assert 0.0 <= value <= 1.0
    clean = summary["student_clean_miou_on_robust_frames"]
    assert summary["student_robust_miou"]["8/255"] <= clean  # an attack never helps on average here
    for domain in summary["per_domain"].values():
        if domain.get("robust_frames"):
            assert set(domain["student_robust_miou"]) == {"2/255", "4/255", "8/255"}
    windows = [json.loads(line) for line in (folder / "local" / "metrics.jsonl").read_text().splitlines()]
    assert all("student_robust_miou" in w for w in windows)  # each 30-frame window holds a robustness frame
    costs = summary["robustness"]
    assert costs["view_frames"] > 0 and costs["view_ms_per_view_frame"] > 0 and costs["view_learner_refine_ms"] > 0
    assert costs["student_syncs"] >= 2 and costs["student_sync_bytes"] % costs["student_syncs"] == 0
    assert costs["robust_frames"] == 3 and costs["probe_ms_per_robust_frame"] > 0
    assert (folder / "local" / "report.png").stat().st_size > 0


def test_robustness_frames_are_always_labelled_and_views_do_not_change_the_teacher_budget(tmp_path, robust_run):
    _, summary = robust_run
    plain = run_local(config(tmp_path, "plain", "adversarial.enabled=false", "robust.loss=none"), progress=False)
    assert plain["teacher_calls"] == summary["teacher_calls"]
    assert plain["robust_frames"] == summary["robust_frames"] == 3
    assert plain["robustness"]["view_frames"] == 0 and plain["robustness"]["student_syncs"] == 0


@pytest.mark.ray
def test_both_runners_give_the_same_robust_figures(tmp_path, ray_session, robust_run):
    from stream.actors import run_ray

    _, local = robust_run
    remote = run_ray(config(tmp_path, "ray", "run.runner=ray"), progress=False)
    for key in ("frames", "teacher_calls", "student_miou", "robust_frames", "student_clean_miou_on_robust_frames",
                "student_robust_miou", "student_robust_miou_vs_teacher", "student_corrupt_miou",
                "student_corrupt_miou_vs_teacher"):
        assert remote[key] == local[key], key
    assert remote["per_domain"] == local["per_domain"]
    for key in ("view_frames", "student_syncs", "student_sync_bytes", "robust_frames"):
        assert remote["robustness"][key] == local["robustness"][key], key


@pytest.fixture(scope="module")
def student_and_frames():
    """The shipped sim student and eight held-out tour frames with the teacher's labels."""
    from stream.builders import build_student, build_teacher
    from stream.sources import open_source

    config = load_config(None, ["run.frames=1200"])
    teacher = build_teacher(config)
    frames = []
    source = open_source(config.run.source, config)
    for frame in source:
        if frame.index % 150 == 75:
            frames.append((frame.image, teacher.label(frame.image[None]).labels[0]))
        if len(frames) == 8:
            break
    source.close()
    return build_student(config).eval(), frames


def _miou_under(model, frames, eps, steps=10, restarts=1):
    """mIoU against the teacher's labels under the stream's own probe (per frame the worse of
    CE and SegPGD), at radius ``eps``/255 with ``steps`` iterations and ``restarts``."""
    import dataclasses

    from learners.robust_probe import RobustProbe, attack_name
    from perception.evaluator import confusion_update
    from perception.metrics import mean_iou

    config = dataclasses.replace(EvaluatorConfig(), robust_eps=f"{eps}/255", robust_steps=steps, robust_restarts=restarts,
                                 corruptions="", worst_k=0)
    probe = RobustProbe(config, seed=0)
    cm = np.zeros((19, 20), np.int64)
    for number, (image, labels) in enumerate(frames):
        confusion_update(cm, labels, probe.probe(model, image, labels, number).labels[attack_name(eps / 255)], 255)
    return float(mean_iou(cm))


def test_the_stream_attack_is_strong_on_the_shipped_student(student_and_frames):
    model, frames = student_and_frames
    miou = {eps: _miou_under(model, frames, eps) for eps in (2, 4, 8)}
    assert miou[2] >= miou[4] >= miou[8]  # a larger radius never helps the student
    pgd50 = _miou_under(model, frames, 4, steps=50)
    assert pgd50 <= miou[4] + 0.005, (pgd50, miou[4])  # more steps never help (beyond mIoU's own noise)
    assert miou[4] - pgd50 <= 0.02, (miou[4], pgd50)  # PGD-10 within 2 points of PGD-50: strong enough to report
    restarts = _miou_under(model, frames, 4, restarts=2)
    assert restarts <= miou[4] + 0.005, (restarts, miou[4])  # random restarts never help (beyond mIoU's own noise)
