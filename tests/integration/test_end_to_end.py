"""Short end-to-end runs: the run folder, the summary keys, the CLI's errors, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.config import load_config
from stream.local import run_local

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "frames", "frames_dropped", "teacher_calls", "teacher_rate", "student_miou", "student_miou_on_teacher_frames",
    "teacher_miou_on_teacher_frames", "student_teacher_ratio", "student_vs_teacher_miou", "frame_limit_reached", "per_domain", "drift_events", "true_shifts", "fps", "wall_s", "student_params",
    "teacher_params", "student_macs", "teacher_macs", "peak_rss_mb",
}


def short_config(tmp_path: Path, frames: int = 180, *extra: str):
    return load_config(None, [f"run.frames={frames}", f"run.out={tmp_path / 'run'}", "evaluator.window=30",
                              "learner.checkpoint_every=90", *extra])


def test_short_tour_writes_the_whole_run_folder(tmp_path):
    import torch

    threads = torch.get_num_threads()
    summary = run_local(short_config(tmp_path), progress=False)
    assert torch.get_num_threads() == threads  # the run's thread split is undone afterwards
    run = tmp_path / "run"
    assert SUMMARY_KEYS <= set(summary)
    assert summary["frames"] == 180
    assert len(summary["per_domain"]) >= 5  # the tour visits every domain even when short
    assert summary["true_shifts"] == sorted(summary["true_shifts"]) and len(summary["true_shifts"]) == 5
    assert 0 < summary["teacher_rate"] <= 1 and summary["teacher_calls"] > 0
    assert summary["student_macs"] * 10 <= summary["teacher_macs"]
    assert 0.0 <= summary["student_miou"] <= 1.0 and summary["teacher_miou_on_teacher_frames"] > 0.5
    assert summary["student_teacher_ratio"] == pytest.approx(
        summary["student_miou_on_teacher_frames"] / summary["teacher_miou_on_teacher_frames"])
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["frames"] == 180
    assert json.loads((run / "config.json").read_text())["run"]["frames"] == 180
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["frame_end"] for r in rows] == [30, 60, 90, 120, 150, 180]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["index"] for e in events if e["kind"] == "checkpoint"] == [89, 179]
    changes = [e for e in events if e["kind"] == "domain_change"]  # the source's own events reach the run folder
    assert [e["index"] for e in changes] == summary["true_shifts"]
    assert (run / "report.png").stat().st_size > 10_000
    assert len(list((run / "checkpoints").glob("*.safetensors"))) == 2


def test_corrupt_frames_and_a_short_log_reach_the_run_folder(tmp_path):
    """A corrupt frame is skipped, counted and named in events.jsonl; a log shorter than a
    window still gets its (partial) window; the summary says the frame limit did not cut it."""
    import cv2
    import numpy as np

    folder = tmp_path / "log" / "frames"
    folder.mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((32, 64, 3), 10 * i, np.uint8))
    (folder / "0005.png").write_bytes(b"damaged")
    config = load_config(None, [f"run.source=images:{folder}", f"run.out={tmp_path / 'run'}", "evaluator.window=100",
                                "sim.width=64", "sim.height=32"])
    summary = run_local(config, progress=False)
    assert summary["frames"] == 11 and summary["frames_skipped"] == 1 and summary["frame_limit_reached"] is False
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any("0005.png" in json.dumps(e) for e in events), events
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["partial"] is True and rows[0]["frames"] == 11


def test_teacher_calls_are_counted_once_per_frame():
    from learners.records import StepResult
    from stream.driver import RunSession

    class Recorder:
        def __init__(self):
            self.events = []

        def event(self, event):
            self.events.append(event)

    session = RunSession(load_config(None, []), Recorder())
    for index, asked in [(0, True), (1, False), (2, True), (1, False), (2, True), (3, True)]:  # 1..2 re-sent
        session.on_step(StepResult(index=index, asked_teacher=asked, teacher_rate=0.1))
    assert (session.frames, session.teacher_calls) == (4, 3)


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path):
    a = run_local(short_config(tmp_path / "a", 90), progress=False)
    b = run_local(short_config(tmp_path / "b", 90), progress=False)
    c = run_local(short_config(tmp_path / "c", 90, "run.seed=1"), progress=False)
    assert a["student_miou"] == b["student_miou"] and a["drift_events"] == b["drift_events"]
    assert a["student_miou"] != c["student_miou"]


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--source", "webcam:0"], "unknown source 'webcam:0'"),
        (["run", "--set", "run.colour=red"], "unknown config key run.colour"),
        (["run", "--set", "nope.x=1"], "unknown config section 'nope'"),
        (["run", "--set", "run.frames=lots"], "run.frames: expected int, got 'lots'"),
        (["run", "--frames", "10", "--out", "/proc/odistill-cannot-write"], "not writable"),
        (["run", "--config", "missing.toml"], "config file missing.toml not found"),
        (["run", "--teacher", "espnetv2:/nope.safetensors"], "not found"),
    ],
)
def test_cli_bad_input_is_a_clear_error_without_traceback(args, message):
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_run_prints_table_and_ctrl_c_still_writes_summary(tmp_path):
    out = tmp_path / "run"
    # one torch thread: beside the test process (and a loaded CI machine) two would stall each other
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--frames", "3000", "--out", str(out), "--no-progress",
                             "--set", "run.torch_threads=1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job inherits SIGINT ignored; a user's terminal does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1]
    assert metrics.exists(), "no metrics window within 300 s"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 0 < summary["frames"] < 3000
    assert "student mIoU" in stdout
