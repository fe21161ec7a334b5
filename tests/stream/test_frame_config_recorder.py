import json
import re

import numpy as np
import pytest

from stream.config import ConfigError, RunConfig, apply_overrides, load_config
from stream.frame import Frame, FrameError
from stream.recorder import OutputError, RunRecorder


def test_frame_arrays_are_read_only_and_checked():
    image = np.zeros((4, 5, 3), np.uint8)
    frame = Frame(image, 0.5, "t", 3, label=np.zeros((4, 5), np.uint8), depth=np.ones((4, 5), np.float64))
    with pytest.raises(ValueError):
        frame.image[0, 0, 0] = 1
    with pytest.raises(ValueError):
        frame.label[0, 0] = 1
    assert frame.depth.dtype == np.float32
    with pytest.raises(FrameError, match="label shape"):
        Frame(image, 0.0, "t", 0, label=np.zeros((3, 5), np.uint8))
    with pytest.raises(FrameError, match="uint8"):
        Frame(image.astype(np.float32), 0.0, "t", 0)
    with pytest.raises(FrameError, match=r"\(H, W, 3\)"):
        Frame(np.zeros((4, 5), np.uint8), 0.0, "t", 0)


def test_overrides_are_type_checked_and_named():
    cfg = apply_overrides(RunConfig(), ["run.seed=3", "run.realtime=yes", "distill.alpha=0.25"])
    assert (cfg.run.seed, cfg.run.realtime, cfg.distill.alpha) == (3, True, 0.25)
    with pytest.raises(ConfigError, match="unknown config section 'nope'"):
        apply_overrides(RunConfig(), ["nope.x=1"])
    with pytest.raises(ConfigError, match="unknown config key run.colour"):
        apply_overrides(RunConfig(), ["run.colour=red"])
    with pytest.raises(ConfigError, match="run.realtime: expected bool"):
        apply_overrides(RunConfig(), ["run.realtime=maybe"])
    with pytest.raises(ConfigError, match="alpha must be in"):
        apply_overrides(RunConfig(), ["distill.alpha=2"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(RunConfig(), ["seed"])


@pytest.mark.parametrize("override, message", [
    ("distill.alpha=2", r"^distill\.alpha must be in \[0, 1\], got 2\.0$"),
    ("distill.temperature=0", r"^distill\.temperature must be > 0"),
    ("online.ema=1", r"^online\.ema must be in \[0, 1\)"),
    ("online.lr=0", r"^online\.lr must be > 0"),
    ("online.batch_size=0", r"^online\.batch_size must be >= 1, got 0$"),
    ("learner.teacher_latency=-1", r"^learner\.teacher_latency must be >= 0"),
    ("scheduler.up=0.5", r"^scheduler\.up must be >= 1, got 0\.5$"),
    ("drift.cooldown=-1", r"^drift\.cooldown must be >= 0"),
    ("replay.capacity=0", r"^replay\.capacity must be >= 1"),
    ("evaluator.window=0", r"^evaluator\.window must be a positive int"),
    ("sim.fov=0", r"^sim\.fov must be a number in"),
    ("sim.town=atlantis", r"^sim\.town: unknown town 'atlantis'"),
    ("student.net=huge", r"^student\.net: unknown student net 'huge'"),
    ("run.transport=tcp", r"^run\.transport: unknown transport 'tcp'"),
])
def test_a_components_own_check_names_its_section_and_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [override])


def test_a_section_is_validated_on_its_final_values():
    # min_rate above the default initial_rate is fine once initial_rate follows, in either order
    for order in (["scheduler.min_rate=0.2", "scheduler.initial_rate=0.2"],
                  ["scheduler.initial_rate=0.2", "scheduler.min_rate=0.2"]):
        cfg = apply_overrides(RunConfig(), order)
        assert (cfg.scheduler.min_rate, cfg.scheduler.initial_rate) == (0.2, 0.2)
    cfg = apply_overrides(RunConfig(), ["run.seed=1", "run.seed=2"])
    assert cfg.run.seed == 2  # the later override wins
    with pytest.raises(ConfigError, match=r"^scheduler\.min_rate, initial_rate and max_rate need 0 < min_rate <= initial_rate"):
        apply_overrides(RunConfig(), ["scheduler.min_rate=0.2"])


def test_ray_transport_and_ring_size_are_checked():
    with pytest.raises(ConfigError, match="unknown transport 'tcp'"):
        load_config(None, ["run.transport=tcp"])
    with pytest.raises(ConfigError, match=r"run.ring_slots=5 is too few: .* = 23 frames"):
        load_config(None, ["run.ring_slots=5"])
    # checked on the final values of every section, whatever the order of the overrides
    assert load_config(None, ["run.ring_slots=21", "learner.teacher_latency=1"]).run.ring_slots == 21
    with pytest.raises(ConfigError, match="run.transport=ring cannot pace a log"):
        load_config(None, ["run.transport=ring", "run.realtime=true"])
    assert load_config(None, []).run.transport == "auto"


def test_toml_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nframes = 50\nsource = "sim:clear"\n[scheduler]\nmax_rate = 0.3\n')
    cfg = load_config(path, ["run.frames=60"])
    assert (cfg.run.frames, cfg.run.source, cfg.scheduler.max_rate) == (60, "sim:clear", 0.3)
    assert json.loads(cfg.to_json())["run"]["frames"] == 60
    path.write_text("[run]\nframes = 'x'\n")
    with pytest.raises(ConfigError, match="run.frames: expected int"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    path.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
    assert files, "configs/ should hold at least the default config"
    for path in files:
        load_config(path)


def test_a_new_run_in_an_old_folder_drops_the_old_learner_checkpoints(tmp_path):
    old = tmp_path / "checkpoints"
    old.mkdir()
    (old / "learner_00003600.safetensors").write_bytes(b"an earlier run")
    (old / "notes.txt").write_text("not a checkpoint")
    recorder = RunRecorder(tmp_path, "{}")
    assert not (old / "learner_00003600.safetensors").exists()  # else the learner would resume from it
    assert (old / "notes.txt").exists()
    recorder.close()


def test_recorder_refuses_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        RunRecorder(blocker / "run", "{}")


def test_recorder_writes_jsonl_and_summary(tmp_path):
    rec = RunRecorder(tmp_path / "run", "{}")
    rec.metric({"frame_end": 100, "student_miou": float("nan")})
    rec.event({"kind": "drift", "index": 3, "detector": "input"})
    rec.write_summary({"frames": 1})
    rec.close()
    assert json.loads((tmp_path / "run/metrics.jsonl").read_text())["student_miou"] is None
    assert json.loads((tmp_path / "run/summary.json").read_text()) == {"frames": 1}


def test_thread_split_is_one_for_inference_and_every_core_for_training():
    from stream.machine import usable_cores

    default = load_config(None, []).run
    assert default.inference_threads() == 1
    assert default.train_threads() == usable_cores()
    pinned = load_config(None, ["run.torch_threads=3"]).run
    assert (pinned.inference_threads(), pinned.train_threads()) == (3, 3)


@pytest.mark.parametrize("override, message", [
    ("cluster.address=nowhere", "cluster.address: expected auto, HOST:PORT or ray://HOST:PORT, got 'nowhere'"),
    ("cluster.teacher_resources=gpu_box", "cluster.teacher_resources: expected name=amount"),
    ("cluster.ingest_resources=disk=-1", "cluster.ingest_resources: expected name=amount"),
])
def test_cluster_settings_are_checked_by_name(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_cluster_settings_parse():
    config = load_config(None, ["cluster.address=ray://head:10001", "cluster.teacher_resources=teacher_node=1"])
    assert config.cluster.address == "ray://head:10001"
    assert config.cluster.resources("teacher") == {"teacher_node": 1.0} and config.cluster.resources("learner") == {}
