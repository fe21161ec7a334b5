"""The Ray runner: the four parts of a run, each wrapped with ``ray.remote`` in an actor.

This is the one module that imports ray. It holds no pipeline logic: each actor class is
``ray.remote(PlainClass)`` of a part the in-process runner uses as it is
(:class:`~stream.ingest.Ingest`, :class:`~stream.parts.TeacherPart`,
:class:`~stream.parts.LearnerPart`, :class:`~stream.evaluation.FrameEvaluator`), the same way
Ray's own ``ray.util.queue`` wraps its ``_QueueActor``; :class:`RayPlacement` is the
:class:`~stream.driver.Placement` that creates them, and :class:`~stream.driver.Driver` runs.

Placement follows resources, not one host: each actor asks for the custom resources its
``cluster.<part>_resources`` names (a node that offers them), and the teacher for a GPU when
the cluster has one and ``teacher.device`` allows it. ``cluster.address`` joins an existing
cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) instead of starting one here. Frames
travel through a shared-memory frame ring on a one-node cluster (``run.transport=auto``), and
through the object store across nodes: the ingest actor's ``read`` returns the pack, the
ground truth and the manifest as three objects; the learner gets the pack's reference and
hands it to the teacher with a slot, the evaluator gets the ground truth.

The ingest and evaluator actors never load torch (each would pay about a second of CPU at
start and a few hundred MB of memory on the cores the learner trains on): the parts import
torch in the teacher's and learner's constructors only.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from perception.teacher import TeacherOutput
from stream.config import ConfigError, RunConfig
from stream.driver import PARTS, Driver, LearnerGone
from stream.evaluation import FrameEvaluator
from stream.framering import remove_ring, ring_name
from stream.ingest import Ingest
from stream.machine import peak_rss_mb, usable_cores
from stream.parts import LearnerPart, TeacherPart

log = logging.getLogger(__name__)

LEARNER_GONE = (RayActorError, ActorUnavailableError)  # died, or restarting after a death
_QUIET = {"num_cpus": 0, "enable_task_events": False}  # no CPU reservation, no per-call event reports

IngestActor = ray.remote(concurrency_groups={"control": 1}, **_QUIET)(Ingest)
TeacherActor = ray.remote(**_QUIET)(TeacherPart)
LearnerActor = ray.remote(max_restarts=1, max_task_retries=0, **_QUIET)(LearnerPart)
EvaluatorActor = ray.remote(**_QUIET)(FrameEvaluator)


def ensure_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or start
    a local Ray instance when it is empty; nothing when Ray is already initialised (tests share
    one per session)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, configure_logging=False)
    else:
        ray.init(num_cpus=num_cpus or usable_cores(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, configure_logging=False)


def get_pack(ref: Any) -> list[Any]:
    """How the learner actor resolves the pack reference it is handed."""
    return ray.get(ref)


class RayTeacherClient:
    """The learner's view of a :class:`TeacherActor`: submit by (pack ref, slot), block on the answer."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def submit(self, observation: Any, handle: tuple[Any, int]) -> ray.ObjectRef:
        pack, slot = handle
        return self.actor.label.remote(pack, slot)

    def result(self, ticket: ray.ObjectRef) -> TeacherOutput:
        return ray.get(ticket)

    def sync_student(self, state: dict[str, Any]) -> None:
        """Send the student's weights; the actor runs calls from one caller in order, so every
        frame submitted after this is labelled against them."""
        self.actor.sync_student.remote(state)


def _crash(part: Any) -> None:
    """Runs inside an actor: its process dies as if it had crashed (fault injection)."""
    os._exit(1)


def _node_id(part: Any) -> str:
    """Runs inside an actor: the id of the node it lives on."""
    return ray.get_runtime_context().get_node_id()


class RayPlacement:
    """Each part in its own Ray actor (see :class:`~stream.driver.Placement` and the module
    docstring)."""

    name = "ray"

    def __init__(self) -> None:
        self.actors: dict[str, Any] = {}
        self.transport = "object_store"
        self.ring: str | None = None
        self.nodes_by_part: dict[str, str] = {}

    # -- building ---------------------------------------------------------------------------
    def _options(self, config: RunConfig, part: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        resources = config.cluster.resources(part)
        if resources:
            options["resources"] = resources
        if part == "teacher":
            gpus = config.cluster.teacher_gpus
            if gpus < 0:  # auto: a GPU when the cluster has one and the teacher may use it
                gpus = 1.0 if config.teacher.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
            if gpus > 0:
                options["num_gpus"] = gpus
        return options

    def _transport(self, config: RunConfig) -> str:
        """``run.transport`` made concrete: ``auto`` is the frame ring on a one-node cluster
        except for paced (``--realtime``) logs, and the object store otherwise (a ring lives
        in one machine's shared memory; a crashed learner's frames are read again from the
        source, which a paced log, dropping by the clock, cannot repeat)."""
        transport = config.run.transport
        if transport == "auto":
            alive = [node for node in ray.nodes() if node.get("Alive", True)]
            return "ring" if len(alive) == 1 and not config.run.realtime else "object_store"
        return transport

    def start(self, config: RunConfig, checkpoint_dir: str) -> None:
        ensure_ray(config.cluster.address)
        self.transport = self._transport(config)
        teacher = TeacherActor.options(**self._options(config, "teacher")).remote(config)
        learner = LearnerActor.options(**self._options(config, "learner")).remote(
            config, RayTeacherClient(teacher), checkpoint_dir, get_pack)
        evaluator = EvaluatorActor.options(**self._options(config, "evaluator")).remote(
            config.evaluator, config.run.label_map, config.run.source)
        self.actors.update(teacher=teacher, learner=learner, evaluator=evaluator)
        self._ask_nodes("teacher", "learner", "evaluator")
        placed = self.nodes_by_part
        ingest_options = self._options(config, "ingest")
        if self.transport == "ring":
            self.ring = ring_name()
            if placed["teacher"] != placed["learner"]:
                raise ConfigError("run.transport=ring: the teacher and the learner were placed on different nodes "
                                  "(cluster.*_resources); a frame ring lives in one machine's memory: use "
                                  "run.transport=auto or object_store")
            if "resources" not in ingest_options:  # the ring's writer beside its readers
                ingest_options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placed["learner"], soft=False)
        self.actors["ingest"] = IngestActor.options(**ingest_options).remote(
            config, ring=self.transport == "ring", ring_name=self.ring)
        self._ask_nodes("ingest")
        if self.transport == "ring" and placed["ingest"] != placed["learner"]:
            raise ConfigError("run.transport=ring: cluster.ingest_resources placed the ingest on another node than "
                              "the learner; a frame ring lives in one machine's memory")

    def _ask_nodes(self, *parts: str) -> None:
        """Ask these parts' actors (at once) which node they were placed on."""
        answers = ray.get([self.actors[part].__ray_call__.remote(_node_id) for part in parts])
        self.nodes_by_part.update(zip(parts, answers))

    # -- calls ------------------------------------------------------------------------------
    def call(self, part: str, method: str, *args: Any, returns: int = 1, control: bool = False) -> Any:
        options: dict[str, Any] = {}
        if returns > 1:
            options["num_returns"] = returns
        if control:
            options["concurrency_group"] = "control"
        bound = getattr(self.actors[part], method)
        return (bound.options(**options) if options else bound).remote(*args)

    def get(self, future: Any, timeout: float | None = None) -> Any:
        try:
            return ray.get(future, timeout=timeout)
        except LEARNER_GONE as error:
            raise LearnerGone(str(error)) from error

    def restarted_learner(self) -> int:
        deadline = time.monotonic() + 120
        while True:  # the restarted actor answers once its constructor restored the checkpoint
            try:
                return ray.get(self.actors["learner"].position.remote())
            except LEARNER_GONE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def crash(self, part: str) -> None:
        self.actors[part].__ray_call__.remote(_crash)

    def peak_rss_mb(self) -> dict[str, float]:
        rss = {"driver": peak_rss_mb()}
        for part in PARTS:
            rss[part] = ray.get(self.actors[part].peak_rss_mb.remote())
        return rss

    def nodes(self) -> dict[str, str]:
        return dict(self.nodes_by_part)

    def stop(self) -> None:
        ingest = self.actors.get("ingest")
        if ingest is not None:
            try:
                ray.get(ingest.close.options(concurrency_group="control").remote(), timeout=30)
            except (GetTimeoutError, RayActorError) as error:
                log.warning("the ingest actor did not close cleanly: %s", error)
        if self.ring is not None:  # readers keep their mappings; no new one is made
            remove_ring(self.ring)
            self.ring = None
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()


def run_ray(config: RunConfig, progress: bool = True, crash_learner_at: int | None = None) -> dict[str, Any]:
    """Run the pipeline on Ray actors; same semantics and outputs as :func:`stream.local.run_local`.

    ``crash_learner_at`` kills the learner's process once that frame was sent (for tests).
    """
    return Driver(config, RayPlacement(), progress=progress, crash_learner_at=crash_learner_at).run()


# ---- the scenario farm ------------------------------------------------------------------------


def _scenario_task(scenario: Any, out_dir: str, overrides: list[str]) -> Any:
    """One scenario, the whole in-process pipeline inside a Ray task (see stream.simtest)."""
    from stream.simtest import run_scenario

    return run_scenario(scenario, out_dir, overrides)


def run_scenarios_ray(scenarios: list[Any], out_dir: str, overrides: list[str], address: str | None = None,
                      num_cpus: int | None = None) -> list[Any]:
    """Run scenarios as parallel Ray tasks (one CPU each), on this machine or on the cluster at
    ``address``; the results in the scenarios' order. Each task runs one torch thread (the
    sim-test default), so the figures match a sequential run's."""
    ensure_ray(address or "", num_cpus)
    task = ray.remote(num_cpus=1, max_retries=0)(_scenario_task)
    refs = [task.remote(scenario, out_dir, overrides) for scenario in scenarios]
    return ray.get(refs)
