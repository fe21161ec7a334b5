"""`pip install "odistill[vehicle]"` pulls neither torch nor ray; the training side's extra does."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_vehicle_install_is_free_of_the_training_stack():
    project = PYPROJECT["project"]
    vehicle = names(project["dependencies"]) | names(project["optional-dependencies"]["vehicle"])
    assert not vehicle & {"torch", "ray", "kornia", "torchvision", "safetensors", "matplotlib"}, vehicle
    assert {"onnxruntime", "tuf", "cryptography", "numpy"} <= vehicle


def test_the_training_extra_brings_the_training_stack():
    train = names(PYPROJECT["project"]["optional-dependencies"]["train"])
    assert {"torch", "ray", "kornia", "safetensors", "onnx"} <= train
