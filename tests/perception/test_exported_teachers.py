import numpy as np
import pytest
import torch

from perception.teachers import TeacherSpecError, open_teacher
from perception.teachers.exported import ExportedTeacherError, OnnxTeacher, TorchScriptTeacher


class Tiny(torch.nn.Module):
    def __init__(self, channels=20):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels, 1)

    def forward(self, x):
        return self.conv(x)[:, :, ::2, ::2]  # half resolution logits


def test_torchscript_teacher_maps_background_to_ignore(tmp_path):
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.zero_()
        model.conv.bias[19] = 5.0  # background wins everywhere
    path = tmp_path / "t.pt"
    torch.jit.script(model).save(str(path))
    teacher = open_teacher(f"torchscript:{path}", device="cpu")
    out = teacher.label(np.zeros((1, 8, 12, 3), np.uint8))
    assert out.labels.shape == (1, 8, 12) and (out.labels == 255).all()
    assert out.logits.shape[1] == 19


def test_torchscript_wrong_channels_is_refused(tmp_path):
    path = tmp_path / "t.pt"
    torch.jit.script(Tiny(channels=7)).save(str(path))
    with pytest.raises(ExportedTeacherError, match=r"19 or 20"):
        TorchScriptTeacher(path, device="cpu").label(np.zeros((1, 8, 8, 3), np.uint8))


def test_not_a_model_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(ExportedTeacherError, match="not a loadable TorchScript"):
        TorchScriptTeacher(path, device="cpu")
    with pytest.raises(TeacherSpecError, match="unknown teacher"):
        open_teacher("caffe:x")


def _export_onnx(path, model, shape):
    pytest.importorskip("onnx")
    torch.onnx.export(model, torch.zeros(*shape), str(path), input_names=["image"], output_names=["logits"],
                      dynamo=False)


def test_onnx_teacher_runs(tmp_path):
    path = tmp_path / "t.onnx"
    _export_onnx(path, Tiny(), (1, 3, 16, 24))
    teacher = OnnxTeacher(path, device="cpu")
    out = teacher.label(np.zeros((1, 32, 48, 3), np.uint8))  # resized to the fixed 16x24 input, labels back at 32x48
    assert out.labels.shape == (1, 32, 48)


def test_onnx_wrong_input_shape_is_refused(tmp_path):
    class Gray(torch.nn.Module):
        def forward(self, x):
            return x.repeat(1, 19, 1, 1)

    path = tmp_path / "gray.onnx"
    _export_onnx(path, Gray(), (1, 1, 8, 8))
    with pytest.raises(ExportedTeacherError, match=r"must be \(B, 3, H, W\)"):
        OnnxTeacher(path, device="cpu")
