"""The Ray runner on a two-node cluster started on this machine: the teacher pinned to the other
node by a custom resource, frames through the object store, the same metrics as in-process."""
from __future__ import annotations

import pytest

from stream.config import load_config
from stream.local import run_local

pytestmark = pytest.mark.ray


def config(tmp_path, name, *extra):
    return load_config(None, ["run.frames=60", f"run.out={tmp_path / name}", "evaluator.window=30",
                              "learner.checkpoint_every=30", *extra])


@pytest.fixture(scope="module")
def two_nodes(local_ray_starter):
    """A head node offering the resource ``learner_node`` and a second node offering
    ``teacher_node``; the suite's own
    Ray instance is stopped meanwhile and started again afterwards."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    had_session = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                            "resources": {"learner_node": 1}})
    cluster.add_node(num_cpus=1, resources={"teacher_node": 1})
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_session:
            local_ray_starter()


def test_teacher_on_another_node_gives_the_same_metrics(tmp_path, two_nodes):
    from stream.actors import run_ray

    local = run_local(config(tmp_path, "local"), progress=False)
    remote = run_ray(config(tmp_path, "ray", "run.runner=ray", f"cluster.address={two_nodes.address}",
                            "cluster.teacher_resources=teacher_node=1", "cluster.learner_resources=learner_node=1"),
                     progress=False)
    nodes = remote["nodes"]
    assert nodes["teacher"] != nodes["learner"]
    assert remote["transport"] == "object_store"  # a frame ring cannot cross nodes
    for key in ("frames", "teacher_calls", "student_miou", "student_miou_on_teacher_frames",
                "teacher_miou_on_teacher_frames", "student_vs_teacher_miou", "drift_events", "true_shifts"):
        assert remote[key] == local[key], key
    assert remote["per_domain"] == local["per_domain"]


def test_ring_transport_refused_across_nodes(tmp_path, two_nodes):
    from stream.actors import run_ray
    from stream.config import ConfigError

    with pytest.raises(ConfigError, match="run.transport=ring"):
        run_ray(config(tmp_path, "ring", "run.runner=ray", f"cluster.address={two_nodes.address}",
                       "cluster.teacher_resources=teacher_node=1", "cluster.learner_resources=learner_node=1",
                       "run.transport=ring"), progress=False)
