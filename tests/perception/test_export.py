"""Exported students: camera bytes in, the PyTorch student's logits and labels out, or no file at all."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.export import (DeployableStudent, ExportConfig, ExportError, bilinear_matrix, export_manifest,
                               export_student, nearest_indices)
from perception.student_nets import build_student_net


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_student_net("default").eval()


def frames(n: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_the_resizes_inside_the_graph_are_torchs_bilinear_and_nearest():
    x = torch.rand(1, 3, 45, 70)
    expected = torch.nn.functional.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False)
    got = bilinear_matrix(45, 32) @ x @ bilinear_matrix(70, 48).T
    assert torch.allclose(got, expected, atol=1e-5)  # weights in float64 here, float32 in torch
    labels = torch.randint(0, 19, (1, 32, 48)).float()
    up = torch.nn.functional.interpolate(labels[:, None], size=(45, 70), mode="nearest")[:, 0]
    assert torch.equal(labels.index_select(1, nearest_indices(32, 45)).index_select(2, nearest_indices(48, 70)), up)


def test_the_deployable_student_is_the_student_on_camera_bytes(net):
    image = frames(1, 48, 96)
    model = DeployableStudent(net, (64, 32), (96, 48)).eval()
    with torch.inference_mode():
        logits, labels = model(torch.from_numpy(image))
        x = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255
        direct = net(torch.nn.functional.interpolate(x, size=(32, 64), mode="bilinear", align_corners=False))
    assert logits.shape == (1, 19, 32, 64) and labels.shape == (1, 48, 96) and labels.dtype == torch.uint8
    assert torch.allclose(logits, direct, atol=1e-5)


@pytest.mark.parametrize("camera", [(64, 32), (96, 48)])
def test_onnx_and_torchscript_exports_match_pytorch_at_export(net, tmp_path, camera):
    pytest.importorskip("onnx")
    report = export_student(net, tmp_path, frames(4, camera[1], camera[0]), ExportConfig(model_size=(64, 32)))
    assert set(report.files) == {"onnx", "torchscript"} and report.camera_size == camera
    for fmt in ("onnx", "torchscript"):
        assert report.parity[fmt]["agreement"] >= 0.999 and report.parity[fmt]["max_logit_diff"] <= 1e-4
        assert (tmp_path / {"onnx": "student.onnx", "torchscript": "student.pt"}[fmt]).is_file()
    manifest = export_manifest(report, version=3)
    assert manifest["input"]["shape"] == [1, camera[1], camera[0], 3] and manifest["input"]["dtype"] == "uint8"
    assert manifest["outputs"]["logits"]["shape"] == [1, 19, 32, 64] and manifest["label_space"]["classes"][13] == "car"
    assert manifest["version"] == 3


def test_an_export_that_misses_the_parity_bound_is_refused_and_removed(net, tmp_path):
    pytest.importorskip("onnx")
    strict = ExportConfig(formats=("onnx",), model_size=(64, 32), max_logit_diff=0.0)
    with pytest.raises(ExportError, match=r"onnx export does not match the PyTorch student on 2 frames: .*max logit "
                                          r"difference .* \(needs <= 0e\+00\); student.onnx removed"):
        export_student(net, tmp_path, frames(2, 32, 64), strict)
    assert not (tmp_path / "student.onnx").exists()


def test_bad_export_settings_and_frames_are_named():
    with pytest.raises(ExportError, match="formats must be among onnx, torchscript"):
        ExportConfig(formats=())
    with pytest.raises(ExportError, match="model_size must be"):
        ExportConfig(model_size=(4, 2))
    with pytest.raises(ExportError, match=r"parity frames must be \(N, H, W, 3\) uint8"):
        export_student(torch.nn.Identity(), "/tmp", np.zeros((2, 8, 8), np.uint8))
