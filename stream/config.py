"""Run configuration: one frozen dataclass per component, gathered into :class:`RunConfig`.

Values come from the dataclass defaults, then a TOML file (``--config``), then
``--set section.key=value`` overrides; every value is type-checked against the field's type,
and unknown sections or keys are refused by name. A section's own validation (its
``__post_init__``) raises with the bare key (``alpha must be in [0, 1]``) or its class name
(``EvaluatorConfig.window``); the error that reaches the user names ``section.key``. The same
machinery loads any root dataclass of sections (``root=``), e.g. the offline-training
commands' ``teacher_training`` and ``student_training`` (:mod:`stream.training`).

Relative paths in a config file are relative to that file's folder, so a config works from
any working folder: the path-valued settings (:data:`PATH_SETTINGS`: ``run.source`` with
its PATH and its ``labels``/``timestamps`` options, ``run.out``, ``teacher.spec``'s PATH,
``student.weights``) are resolved against it; absolute paths, ``default``, ``none``, ``sim``
and ``sim:SCHEDULE`` are kept. Overrides (``--set``, CLI flags) are relative to the working
folder, as a shell user expects. :func:`load_config_with_origins` also says where each
non-default value came from.

Example:
    >>> cfg = apply_overrides(RunConfig(), ["run.frames=120", "scheduler.max_rate=0.4"])
    >>> cfg.run.frames, cfg.scheduler.max_rate
    (120, 0.4)
    >>> apply_overrides(RunConfig(), ["run.frames=many"])
    Traceback (most recent call last):
    ...
    stream.config.ConfigError: run.frames: expected int, got 'many'
    >>> apply_overrides(RunConfig(), ["distill.alpha=2"])
    Traceback (most recent call last):
    ...
    stream.config.ConfigError: distill.alpha must be in [0, 1], got 2.0
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from learners.configs import DistillationConfig, ExpertConfig, OnlineConfig, RobustDistillConfig, StaticGateConfig, StreamLearnerConfig
from learners.monitor import DriftConfig
from learners.replay import ReplayConfig
from learners.scheduler import SchedulerConfig
from perception.evaluator import EvaluatorConfig
from perception.views import ViewConfig
from sim.seeds import DEFAULT_RUN_SEED
from sim.world import SimConfig
from perception.teachers import FEATURE_KINDS, TEACHER_KINDS, resolve_teacher_spec
from stream.machine import usable_cores
from stream.sources import resolve_path, resolve_spec_paths


class ConfigError(ValueError):
    """A config file, section, key or value is wrong; the message names which."""


@dataclass(frozen=True)
class TeacherConfig:
    spec: str = "sim"  # sim | segnet:PATH | espnetv2:PATH | torchscript:PATH | onnx:PATH
    device: str = "auto"  # auto (cuda when present, else cpu) | cpu | cuda | cuda:N
    logits_stride: int = 4  # teacher logits are shipped at 1/stride of the frame size
    input_size: str = ""  # WIDTHxHEIGHT the teacher runs at (e.g. 480x352), answering at the frame size;
    # "" or "native" = the frame's size (ESPNetv2 then rounds each side to a multiple of 16)
    tta: str = "none"  # test-time augmentation: none | flip | scales | flip+scales: label each frame over those
    # views and average (perception.teachers.tta; costs the teacher one pass per view)
    tta_scales: tuple[float, ...] = (0.75, 1.0, 1.25)  # tta scales / flip+scales: the views' sizes, x input size
    tta_average: str = "probs"  # average the views' softmax "probs" or their "logits"

    def __post_init__(self) -> None:
        from perception.teachers import TTA_AVERAGES, parse_input_size, tta_views

        parse_input_size(self.input_size, self.spec.partition(":")[0])  # ValueError naming teacher.input_size
        tta_views(self.tta, self.tta_scales)  # ValueError naming teacher.tta or teacher.tta_scales
        if self.tta_average not in TTA_AVERAGES:
            raise ValueError(f"tta_average: expected one of {', '.join(TTA_AVERAGES)}, got {self.tta_average!r}")


@dataclass(frozen=True)
class StudentConfig:
    weights: str = "default"  # default = the shipped clear-day student; "none" = random init; or a path
    device: str = "cpu"  # auto | cpu | cuda | cuda:N (perception.device.resolve_device)
    net: str = "default"  # architecture: a name in perception.student_nets.STUDENT_NETS (default | fast)

    def __post_init__(self) -> None:
        from perception.student_nets import STUDENT_NETS

        if self.net not in STUDENT_NETS:
            raise ValueError(f"net: unknown student net {self.net!r} (choose one of: {', '.join(sorted(STUDENT_NETS))})")


@dataclass(frozen=True)
class RunSection:
    source: str = "sim:tour"  # sim:SCHEDULE | video:PATH | images:DIR | kitti:DIR | rosbag:PATH#TOPIC | logs:DIR
    frames: int = 3600  # frames to process (a log ends earlier when it runs out)
    seed: int = DEFAULT_RUN_SEED  # everything stochastic, the sim's world too: a held-out world (sim.seeds)
    runner: str = "local"  # local | ray
    out: str = "runs/latest"  # the run folder
    torch_threads: int = 0  # 0 = in both runners one thread for the teacher and the student's
    # predictions and every usable core for the learner's gradient steps; N = N threads for all
    max_in_flight: int = 8  # Ray: frames between ingest and learner at most
    transport: str = "auto"  # Ray: how images reach the learner and teacher: ring (shared memory,
    # one machine) | object_store | auto (ring on a one-machine cluster unless realtime)
    ring_slots: int = 0  # Ray ring transport: image slots; 0 = 2 x max_in_flight + teacher latency + 16
    realtime: bool = False  # pace a log by its timestamps (dropping frames when slow)
    label_map: str = ""  # evaluate in another label set (e.g. camvid); empty = canonical
    closed_loop: bool = False  # the student steers: a lane keeper turns each frame's prediction into the ego's
    # steering (sim.control; the built-in simulator, in-process runner); the summary gains "driving"

    def inference_threads(self) -> int:
        """Torch threads of the teacher and of the student's batch-1 predictions.

        One unless ``torch_threads`` says otherwise: a small forward pass gains little from a
        second thread, and under Ray that thread would only wait on the other actors.
        """
        return self.torch_threads if self.torch_threads > 0 else 1

    def train_threads(self) -> int:
        """Torch threads of the learner's gradient steps: every usable core unless
        ``torch_threads`` says otherwise (training is the critical path and splits well).

        Both runners use the same counts, so a seed and a config give the same metrics in
        either (another count would sum floats in another order). Each process counts its
        own usable cores: on a cluster whose nodes differ, pin ``torch_threads`` for that.

        Example:
            >>> RunSection(torch_threads=3).train_threads(), RunSection(torch_threads=3).inference_threads()
            (3, 3)
        """
        return self.torch_threads if self.torch_threads > 0 else usable_cores()

    def __post_init__(self) -> None:
        from stream.sources.labelmaps import evaluation_space

        evaluation_space(self.label_map)  # ValueError naming run.label_map
        if self.transport not in ("auto", "ring", "object_store"):
            raise ValueError(f"transport: unknown transport {self.transport!r} (choose auto, ring or object_store)")
        if self.ring_slots < 0:
            raise ValueError(f"ring_slots must be >= 0, got {self.ring_slots}")
        if self.closed_loop and self.runner != "local":
            raise ValueError("closed_loop needs the in-process runner (run.runner=local): the controller must see a "
                             "frame's prediction before the next frame is rendered (sim-test --runner ray runs whole "
                             "scenarios in parallel instead)")
        if self.closed_loop and not self.source.startswith("sim:"):
            raise ValueError(f"closed_loop steers the built-in simulator's ego; source {self.source!r} is not sim:...")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the Ray runner's parts live (``run.runner=ray``)."""

    address: str = ""  # "" = start a Ray instance on this machine; auto | HOST:PORT | ray://HOST:PORT = join a cluster
    ingest_resources: str = ""  # custom Ray resources each actor needs, "name=amount,..." (places it on
    teacher_resources: str = ""  # a node that offers them; e.g. "teacher_node=1" with
    learner_resources: str = ""  # `ray start --resources '{"teacher_node": 1}'` on the GPU machine)
    evaluator_resources: str = ""
    teacher_gpus: float = -1.0  # GPUs of the teacher actor; -1 = one when the cluster has a GPU and teacher.device is not cpu

    def __post_init__(self) -> None:
        address = self.address
        if address and address != "auto" and not address.startswith("ray://") and ":" not in address:
            raise ValueError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
        for part in ("ingest", "teacher", "learner", "evaluator"):
            self.resources(part)

    def resources(self, part: str) -> dict[str, float]:
        """The custom Ray resources ``<part>_resources`` names: ``"name=amount,..."`` -> {name: amount}.

        Example:
            >>> ClusterConfig(teacher_resources="teacher_node=1, fast_disk=0.5").resources("teacher")
            {'teacher_node': 1.0, 'fast_disk': 0.5}
            >>> ClusterConfig(learner_resources="gpu_box").resources("learner")
            Traceback (most recent call last):
            ...
            ValueError: learner_resources: expected name=amount[,name=amount...] with amounts >= 0, got 'gpu_box'
        """
        value = getattr(self, f"{part}_resources")
        resources: dict[str, float] = {}
        for item in filter(None, (entry.strip() for entry in value.split(","))):
            name, sep, amount = (side.strip() for side in item.partition("="))
            try:
                number = float(amount)
            except ValueError:
                number = -1.0
            if not sep or not name or number < 0:
                raise ValueError(f"{part}_resources: expected name=amount[,name=amount...] with amounts >= 0, got {value!r}")
            resources[name] = number
        return resources


@dataclass(frozen=True)
class PublishConfig:
    """Candidates published to a registry during a run (``stream/gate.py`` judges them later).

    Example:
        >>> PublishConfig(every=-1)
        Traceback (most recent call last):
        ...
        ValueError: publish.every and publish.after_drift must be >= 0 frames, got -1, 0
    """

    registry: str = ""  # a registry folder (odistill registry init); "" = publish nothing
    every: int = 0  # publish the checkpoint at every multiple of this many frames (a multiple of learner.checkpoint_every)
    after_drift: int = 0  # publish the first checkpoint at least this many frames after a drift (0 = off)

    def __post_init__(self) -> None:
        if self.every < 0 or self.after_drift < 0:
            raise ValueError(f"publish.every and publish.after_drift must be >= 0 frames, got {self.every}, {self.after_drift}")


@dataclass(frozen=True)
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    sim: SimConfig = field(default_factory=SimConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    learner: StreamLearnerConfig = field(default_factory=StreamLearnerConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    distill: DistillationConfig = field(default_factory=DistillationConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    adversarial: ViewConfig = field(default_factory=ViewConfig)
    robust: RobustDistillConfig = field(default_factory=RobustDistillConfig)
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    static: StaticGateConfig = field(default_factory=StaticGateConfig)  # the input-change gate (static stretches)
    publish: PublishConfig = field(default_factory=PublishConfig)  # candidates to a registry during the run

    def check(self) -> None:
        """Checks that span sections (each section checks its own values when it is made)."""
        least = self.least_ring_slots()
        if 0 < self.run.ring_slots < least:
            raise ConfigError(
                f"run.ring_slots={self.run.ring_slots} is too few: the driver, the learner and the next read hold up to "
                f"2 x run.max_in_flight + learner.teacher_latency + run.max_in_flight / 2 = {least} frames at once "
                f"(or 0 for the default)"
            )
        if self.run.realtime and self.run.transport == "ring":
            raise ConfigError(
                "run.transport=ring cannot pace a log (--realtime): the pacer decodes the frames it drops into ring "
                "slots, and a crashed learner's frames cannot be read again by the clock; use auto or object_store"
            )

        kind = self.teacher.spec.partition(":")[0]
        if self.distill.features and kind in TEACHER_KINDS and kind not in FEATURE_KINDS:
            raise ConfigError(f"distill.feature_weight={self.distill.feature_weight} asks the teacher for intermediate "
                              f"features, but teacher.spec={self.teacher.spec!r} cannot give them (only "
                              f"{', '.join(sorted(FEATURE_KINDS))} teachers can); set distill.feature_weight=0 for "
                              f"logits-only distillation")
        if self.adversarial.enabled and self.robust.loss == "none":
            raise ConfigError("adversarial.enabled=true makes views that only robust distillation learns from, but "
                              "robust.loss=none: set robust.loss (ard, rslad or trades), or adversarial.enabled=false")
        if self.distill.depth_weight > 0:
            if self.robust.loss != "none":
                raise ConfigError(f"distill.depth_weight={self.distill.depth_weight:g} (multi-task) is not combined with "
                                  f"robust.loss={self.robust.loss}: set robust.loss=none or distill.depth_weight=0")
            if self.teacher.spec.partition(":")[0] != "sim":
                raise ConfigError(f"distill.depth_weight={self.distill.depth_weight:g} needs a teacher with depth (the sim "
                                  f"teacher with its depth head), got teacher.spec={self.teacher.spec}")
        if (self.publish.every or self.publish.after_drift) and not self.publish.registry:
            raise ConfigError("publish.every / publish.after_drift need publish.registry (a registry folder)")
        if self.publish.every and (not self.learner.checkpoint_every or self.publish.every % self.learner.checkpoint_every):
            raise ConfigError(f"publish.every={self.publish.every} must be a multiple of learner.checkpoint_every="
                              f"{self.learner.checkpoint_every}: candidates are the learner's checkpoints")
        if self.publish.after_drift and not self.learner.checkpoint_every:
            raise ConfigError("publish.after_drift needs learner.checkpoint_every > 0: candidates are the learner's checkpoints")
        check_label_maps(self)

    def least_ring_slots(self) -> int:
        """The frames the Ray runner may hold in ring slots at once: two windows of
        ``run.max_in_flight`` (in the learner, and read but not sent), the next read (half a
        window) and the learner's frames waiting on teacher answers."""
        window = max(1, self.run.max_in_flight)
        return 2 * window + max(1, window // 2) + self.learner.teacher_latency

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def check_label_maps(config: RunConfig) -> None:
    """Refuse a source ``label_map`` option and a ``run.label_map`` that do not fit together.

    Predictions are canonical and mapped into the evaluation label set (``run.label_map``);
    the ground truth is taken as it is, so the source's ``label_map`` must give labels in
    that same set: ``label_map=camvid`` (CamVid -> canonical) goes with an empty
    ``run.label_map``, ``label_map=camvid-raw`` (CamVid ids kept) with ``run.label_map=camvid``.
    Any other pair maps the labels twice and scores nonsense (a teacher mIoU near 0). Called
    by :meth:`RunConfig.check` (so by :func:`load_config`), before a frame is read; a driver
    handed a RunConfig built otherwise can call it itself.

    Example:
        >>> check_label_maps(RunConfig(run=RunSection(source="images:log/frames?label_map=camvid-raw", label_map="camvid")))
        >>> check_label_maps(RunConfig(run=RunSection(source="images:log/frames?label_map=camvid", label_map="camvid")))
        Traceback (most recent call last):
        ...
        stream.config.ConfigError: run.source 'images:log/frames?label_map=camvid' maps its labels into the canonical label set (label_map=camvid) but run.label_map=camvid evaluates in the camvid label set, which maps them a second time: every score would be nonsense. With run.label_map=camvid give the source label_map=camvid-raw (or no label_map); for the canonical label set leave run.label_map empty

    Raises:
        ConfigError: an unknown evaluation label set or source label map, or a pair that
            does not fit (the message names both settings).
    """
    from stream.sources import parse_spec
    from stream.sources.base import SourceError
    from stream.sources.labelmaps import evaluation_space, get_label_map, maps_into

    run = config.run
    try:
        wanted = evaluation_space(run.label_map)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _, _, options = parse_spec(run.source)
    name = options.get("label_map")
    if not name:
        return  # the label files' values as they are: only the runtime check can judge them
    try:
        label_map = get_label_map(name)
    except SourceError as error:
        raise ConfigError(f"run.source {run.source!r}: {error}") from None
    if label_map.space == wanted:
        return
    if wanted == "canonical":
        fix = (f"to evaluate in the {label_map.space} label set set run.label_map={label_map.space}; for the canonical "
               f"label set give the source label_map={' or '.join(maps_into('canonical'))}")
        what = "so they would be scored against canonical predictions as if they were canonical ids"
    else:
        fix = (f"with run.label_map={run.label_map} give the source label_map={' or '.join(maps_into(wanted))} "
               f"(or no label_map); for the canonical label set leave run.label_map empty")
        what = "which maps them a second time"
    shown = f"run.label_map={run.label_map}" if run.label_map else "run.label_map='' (canonical)"
    raise ConfigError(
        f"run.source {run.source!r} maps its labels into the {label_map.space} label set (label_map={name}) but {shown} "
        f"evaluates in the {wanted} label set, {what}: every score would be nonsense. {fix[0].upper()}{fix[1:]}"
    )


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn ``value`` (from TOML or a ``--set`` string) into ``kind`` or raise ConfigError."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, option, value)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is tuple:
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        item_kind = args[0] if args else str
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{name}: expected {len(args)} values, got {len(items)}")
            return tuple(_coerce(name, a, v) for a, v in zip(args, items))
        return tuple(_coerce(name, item_kind, v) for v in items)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{name}: expected bool, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected int, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected float, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected str, got {value!r}")
    raise ConfigError(f"{name}: unsupported field type {kind!r}")


Root = TypeVar("Root")


def _section_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def _coerced_changes(config: Any, changes: list[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    """Check and coerce (section, key, raw value) triples; later ones win. Grouped by section."""
    sections = {f.name for f in dataclasses.fields(config)}
    grouped: dict[str, dict[str, Any]] = {}
    for section_name, key, raw in changes:
        if section_name not in sections:
            raise ConfigError(f"unknown config section {section_name!r} (sections: {', '.join(sorted(sections))})")
        types_ = _section_types(getattr(config, section_name))
        if key not in types_:
            raise ConfigError(f"unknown config key {section_name}.{key} (keys: {', '.join(sorted(types_))})")
        grouped.setdefault(section_name, {})[key] = _coerce(f"{section_name}.{key}", types_[key], raw)
    return grouped


def section_message(message: str, section_name: str, section_type: type) -> str:
    """A section's own validation message, naming its key as ``section.key``.

    A component does not know which section it is configured under, so it starts its message
    with the bare key (``alpha must be ...``) or names keys by its class
    (``EvaluatorConfig.window``); this is the one place that turns both into ``section.key``.
    A message that starts with no key of the section gets the section as a prefix.

    Example:
        >>> from learners.configs import DistillationConfig
        >>> section_message("alpha must be in [0, 1], got 2.0", "distill", DistillationConfig)
        'distill.alpha must be in [0, 1], got 2.0'
        >>> section_message("DistillationConfig.temperature must be > 0, got 0.0", "distill", DistillationConfig)
        'distill.temperature must be > 0, got 0.0'
        >>> section_message("a bad mix", "distill", DistillationConfig)
        'distill: a bad mix'
    """
    message = re.sub(rf"(?<![\w.]){re.escape(section_type.__name__)}\.(?=\w)", f"{section_name}.", message)
    if message.startswith(f"{section_name}."):
        return message
    key = re.match(r"\w+", message)
    if key and key.group(0) in {f.name for f in dataclasses.fields(section_type)}:
        return f"{section_name}.{message}"
    return f"{section_name}: {message}"


def _apply(config: Root, changes: list[tuple[str, str, Any]]) -> Root:
    """Apply all changes, each section at once, so a section validates its final values only
    (``scheduler.min_rate=0.12`` with ``scheduler.initial_rate=0.12`` is fine in either order)."""
    for section_name, values in _coerced_changes(config, changes).items():
        section = getattr(config, section_name)
        try:
            new_section = dataclasses.replace(section, **values)
        except ValueError as error:  # a component's own validation
            raise ConfigError(section_message(str(error), section_name, type(section))) from None
        config = dataclasses.replace(config, **{section_name: new_section})
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def _parse_overrides(overrides: list[str]) -> list[tuple[str, str, Any]]:
    changes = []
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        section_name, key = dotted.strip().split(".", 1)
        changes.append((section_name, key, raw.strip()))
    return changes


def apply_overrides(config: Root, overrides: list[str]) -> Root:
    """Apply ``section.key=value`` strings to a :class:`RunConfig` (or another root of sections);
    later ones win, and each section is validated once, at the end."""
    return _apply(config, _parse_overrides(overrides))


def _resolve_weights(value: str, base: Path) -> str:
    return value if value in ("default", "none") else resolve_path(value, base)


# "section.key" -> how a config file's relative value of it is made absolute (against the file's folder)
PATH_SETTINGS: dict[str, Callable[[str, Path], str]] = {
    "run.source": resolve_spec_paths,
    "run.out": resolve_path,
    "teacher.spec": resolve_teacher_spec,
    "student.weights": _resolve_weights,
}

COMMAND_LINE = "the command line"  # the origin of an override


def _read_file(path: str | Path) -> list[tuple[str, str, Any]]:
    """The (section, key, value) triples of a TOML config file, path-valued ones resolved."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: not valid TOML ({error})") from None
    base = Path(os.path.abspath(path)).parent
    changes = []
    for section_name, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path}: {section_name!r} must be a [section] table")
        for key, raw in values.items():
            resolve = PATH_SETTINGS.get(f"{section_name}.{key}")
            if resolve is not None and isinstance(raw, str) and raw:
                raw = resolve(raw, base)
            changes.append((section_name, key, raw))
    return changes


def load_config_with_origins(path: str | Path | None = None, overrides: list[str] | None = None,
                             root: type = RunConfig) -> tuple[Any, dict[str, str]]:
    """:func:`load_config`, and where each value set by the file or the overrides came from.

    The origins map ``"section.key"`` to the config file's path as given (for values the file
    sets) or :data:`COMMAND_LINE` (for overrides, which win); defaults are left out. They are
    kept beside the config, not in it: ``config.json`` holds the resolved values only.

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "short.toml"
        >>> _ = file.write_text("[run]\\nframes = 101\\nseed = 4\\n")
        >>> config, origins = load_config_with_origins(file, ["run.seed=5"])
        >>> config.run.frames, origins["run.frames"] == str(file), origins["run.seed"]
        (101, True, 'the command line')
    """
    file_changes = _read_file(path) if path is not None else []
    override_changes = _parse_overrides(overrides or [])
    origins = {f"{section}.{key}": str(path) for section, key, _ in file_changes}
    origins.update({f"{section}.{key}": COMMAND_LINE for section, key, _ in override_changes})
    return _apply(root(), file_changes + override_changes), origins


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, root: type = RunConfig) -> Any:
    """Defaults, then the TOML file at ``path`` (if any; its relative paths are relative to
    its folder), then ``overrides`` (relative paths stay relative to the working folder).

    ``root`` is the dataclass whose fields are the sections (a :class:`RunConfig` by default;
    the offline-training commands pass theirs); the result is an instance of it.
    """
    return load_config_with_origins(path, overrides, root)[0]
