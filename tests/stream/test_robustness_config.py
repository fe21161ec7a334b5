"""Bad robustness settings are clear errors naming the setting; a teacher without gradients
as the attack target is refused unless the config lets the views fall back to the student."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from stream.config import ConfigError, load_config


@pytest.mark.parametrize("override, message", [
    ("adversarial.eps=1.5", "adversarial.eps must be in [0, 1], got 1.5"),
    ("adversarial.eps=-0.1", "adversarial.eps must be in [0, 1]"),
    ("adversarial.presets=rain,fog", "adversarial.presets: unknown preset 'fog'"),
    ("adversarial.worst_k=0", "adversarial.worst_k must be >= 1, got 0"),
    ("adversarial.target=driver", "adversarial.target: unknown attack target 'driver'"),
    ("adversarial.kind=cw", "adversarial"),
    ("adversarial.steps=0", "adversarial"),
    ("evaluator.robust_eps=2/255,300/255", "evaluator.robust_eps: eps must be in [0, 1]"),
    ("evaluator.robust_eps=four", "evaluator.robust_eps: expected a number or N/255, got 'four'"),
    ("evaluator.corruptions=snow,hail", "evaluator.corruptions: unknown preset 'hail'"),
    ("evaluator.robust_loss=cw", "evaluator.robust_loss: expected ce, segpgd or both"),
    ("evaluator.worst_k=-1", "evaluator.worst_k must be >= 0"),
    ("robust.loss=madry", "robust.loss: unknown robust loss 'madry'"),
    ("robust.refine_eps=2", "robust.refine_eps must be in [0, 1]"),
])
def test_bad_robustness_settings_name_the_setting(override, message):
    extra = ["robust.loss=trades"] if override.startswith("adversarial.") else []
    with pytest.raises(ConfigError) as error:
        load_config(None, ["adversarial.enabled=true", *extra, override] if extra else [override])
    assert message in str(error.value)


def test_views_without_a_robust_loss_are_refused():
    with pytest.raises(ConfigError, match="adversarial.enabled=true makes views .* robust.loss=none"):
        load_config(None, ["adversarial.enabled=true"])


@pytest.fixture(scope="module")
def onnx_teacher(tmp_path_factory):
    """A small ONNX teacher (no gradients): the sim SegNet exported."""
    import torch

    from perception.nets import SegNet, STUDENT_CONFIG

    path = tmp_path_factory.mktemp("onnx") / "teacher.onnx"
    torch.onnx.export(SegNet(STUDENT_CONFIG).eval(), torch.rand(1, 3, 32, 64), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    return path


def test_a_teacher_without_gradients_as_the_attack_target_is_refused(onnx_teacher):
    from stream.parts import TeacherPart

    config = load_config(None, ["adversarial.enabled=true", "robust.loss=ard", "adversarial.target=teacher",
                                f"teacher.spec=onnx:{onnx_teacher}", "sim.width=64", "sim.height=32"])
    with pytest.raises(ConfigError, match=r"adversarial.target=teacher: teacher onnx:teacher.onnx has no gradients .*"
                                          r"adversarial.fallback=true"):
        TeacherPart(config)


def test_the_fallback_aims_the_views_at_the_student(onnx_teacher, caplog):
    from learners.records import Observation
    from stream.parts import TeacherPart

    config = load_config(None, ["adversarial.enabled=true", "robust.loss=ard", "adversarial.target=teacher",
                                "adversarial.fallback=true", "adversarial.steps=1", "adversarial.worst_k=1",
                                f"teacher.spec=onnx:{onnx_teacher}", "sim.width=64", "sim.height=32"])
    with caplog.at_level(logging.WARNING):
        part = TeacherPart(config)
    assert "aim at the student" in caplog.text
    out = part.label_frame(Observation(np.full((32, 64, 3), 90, np.uint8), 0, 0.0, "cam"))
    assert out.views is not None and out.views.recipe["attack"]["target"] == "student"
    assert part.describe(32, 64)["views"]["target"] == "student"


def test_the_sim_teacher_can_be_the_attack_target():
    from learners.records import Observation
    from stream.parts import TeacherPart

    config = load_config(None, ["adversarial.enabled=true", "robust.loss=ard", "adversarial.target=teacher",
                                "adversarial.steps=2", "adversarial.worst_k=1", "sim.width=64", "sim.height=32"])
    part = TeacherPart(config)
    image = np.full((32, 64, 3), 90, np.uint8)
    out = part.label_frame(Observation(image, 0, 0.0, "cam"))
    views = out.views
    assert views.recipe["attack"]["target"] == "teacher"
    change = np.abs(views.adversarial.astype(int) - image.astype(int)).max()
    assert 0 < change <= 4  # adversarial.eps 4/255, on the 8-bit grid
