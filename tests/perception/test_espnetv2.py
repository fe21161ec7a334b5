"""ESPNetv2: structure, strict loading of the shared Cityscapes checkpoints, loading errors,
the Teacher protocol, and a quick accuracy check on real CamVid frames.

Tests that need ../shared/data (relative to the repository root) skip with a message where
it is absent; the rest build random-init networks and write their own safetensors files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from perception.labels import CAMVID_VOID, IGNORE_INDEX, canonical_to_camvid
from perception.teacher import Teacher, TeacherOutput
from perception.teachers.common import (
    CheckpointFormatError,
    CheckpointMismatchError,
    load_state_strict,
    round_to_multiple,
)
from perception.teachers.espnetv2 import (
    ESPNetv2Config,
    ESPNetv2Segmentation,
    ESPNetv2Teacher,
    infer_width,
    load_espnetv2,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"
TEACHERS = DATA / "teachers"
CAMVID = DATA / "logs" / "camvid_0016E5_15hz"
EXPECTED_PARAMS = {0.5: 80_342, 2.0: 789_242}  # nn.Parameters (buffers excluded)
FILE_VALUES = {0.5: 87_731, 2.0: 814_351}  # every value in the file (data README)


def weights_path(width: float) -> Path:
    path = TEACHERS / f"espnetv2_s{width}_cityscapes.safetensors"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path} not found")
    return path


@pytest.fixture
def random_s05_file(tmp_path: Path) -> Path:
    """A randomly initialised s=0.5 network saved as safetensors."""
    torch.manual_seed(0)
    path = tmp_path / "random_s0.5.safetensors"
    save_file(ESPNetv2Segmentation(width=0.5).state_dict(), str(path))
    return path


# ------------------------------------------------------------------------------- structure
def test_output_shape_channels_and_sizes() -> None:
    net = ESPNetv2Segmentation(width=0.5).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 96)).shape == (2, 20, 64, 96)
        assert net.decode(torch.rand(1, 3, 64, 96)).shape == (1, 20, 32, 48)
        # not a multiple of 16: still works (the decoder resizes to the encoder's sizes)
        assert net(torch.rand(1, 3, 72, 100)).shape == (1, 20, 72, 100)
        assert net(torch.rand(1, 3, 64, 96), output_size=(30, 40)).shape == (1, 20, 30, 40)


def test_eesp_dilations_follow_receptive_limits() -> None:
    enc = ESPNetv2Segmentation(width=2.0).base_net
    assert enc.level2_0.eesp.dilations == (1, 2, 3, 4)
    assert enc.level3_0.eesp.dilations == (1, 2, 3, 4)
    assert all(block.dilations == (1, 2, 3, 4) for block in enc.level3)
    assert enc.level4_0.eesp.dilations == (1, 2, 3, 4)
    assert all(block.dilations == (1, 1, 2, 3) for block in enc.level4)
    assert [conv.conv.stride for conv in enc.level3_0.eesp.spp_dw] == [(2, 2)] * 4
    assert [conv.conv.dilation for conv in enc.level4[0].spp_dw] == [(1, 1), (1, 1), (2, 2), (3, 3)]


def test_normalisation_is_inside_the_model() -> None:
    torch.manual_seed(0)
    net = ESPNetv2Segmentation(width=0.5).eval()
    raw = ESPNetv2Segmentation(width=0.5, normalize=False).eval()
    raw.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 32, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), raw((x - mean) / std))
    assert "mean" not in net.state_dict() and "std" not in net.state_dict()


def test_bad_model_input_is_named() -> None:
    net = ESPNetv2Segmentation(width=0.5).eval()
    with pytest.raises(ValueError, match=r"input x must be \(B, 3, H, W\)"):
        net(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="floating point"):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# ------------------------------------------------------------------------------- loading
@pytest.mark.shared_data
@pytest.mark.parametrize("width", [0.5, 2.0])
def test_shared_checkpoints_load_strict(width: float) -> None:
    path = weights_path(width)
    from safetensors.torch import load_file

    state = load_file(str(path))
    assert infer_width(state) == width
    assert sum(t.numel() for t in state.values()) == FILE_VALUES[width]
    net = ESPNetv2Segmentation(width=width)
    net.load_state_dict(state, strict=True)  # torch's own strict check
    net = load_espnetv2(path)  # ours, width inferred
    assert net.width == width
    assert sum(p.numel() for p in net.parameters()) == EXPECTED_PARAMS[width]
    torch.testing.assert_close(net.state_dict()["bu_dec_l4.merge_layer.3.bias"], state["bu_dec_l4.merge_layer.3.bias"])


def test_wrong_shape_names_the_tensor(tmp_path: Path) -> None:
    state = ESPNetv2Segmentation(width=0.5).state_dict()
    state["base_net.level3.1.proj_1x1.conv.weight"] = torch.zeros(16, 16, 3, 3)  # was (16, 16, 1, 1)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError) as info:
        ESPNetv2Teacher(ESPNetv2Config(weights=str(path), device="cpu"))
    err = info.value
    assert err.tensor_name == "base_net.level3.1.proj_1x1.conv.weight"
    assert (err.expected_shape, err.got_shape) == ((16, 16, 1, 1), (16, 16, 3, 3))
    message = str(err)
    assert "base_net.level3.1.proj_1x1.conv.weight" in message and str(path) in message
    assert "(16, 16, 1, 1)" in message and "(16, 16, 3, 3)" in message


def test_missing_and_unexpected_tensors_are_named(tmp_path: Path) -> None:
    state = ESPNetv2Segmentation(width=0.5).state_dict()
    del state["bu_dec_l2.br.br.1.weight"]
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match=r"'bu_dec_l2\.br\.br\.1\.weight'.*missing") as info:
        load_state_strict(ESPNetv2Segmentation(width=0.5), state, "mem")
    assert info.value.problems == 2
    state = ESPNetv2Segmentation(width=0.5).state_dict()
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match=r"'extra\.weight'.*no such tensor"):
        load_state_strict(ESPNetv2Segmentation(width=0.5), state, "mem")


def test_width_that_does_not_fit_the_file(random_s05_file: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match=r"'base_net\.level1\.conv\.weight' expected shape \(32, 3, 3, 3\), got shape \(16, 3, 3, 3\)"):
        ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), width=2.0, device="cpu"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "espnetv2.safetensors"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        ESPNetv2Teacher(ESPNetv2Config(weights=str(missing), device="cpu"))
    assert str(missing) in str(info.value)


def test_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointFormatError, match="never loaded") as info:
        ESPNetv2Teacher(ESPNetv2Config(weights=str(path), device="cpu"))
    assert str(path) in str(info.value)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="inference_size"):
        ESPNetv2Config(inference_size=(700, 960))
    with pytest.raises(ValueError, match="batch_size"):
        ESPNetv2Config(batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        ESPNetv2Config(dtype="int8")
    with pytest.raises(ValueError, match="width"):
        ESPNetv2Config(width=3.0)
    with pytest.raises(ValueError, match="scale"):
        ESPNetv2Config(scale=0.0)


# ------------------------------------------------------------------------------- teacher
def test_teacher_protocol_shapes_and_errors(random_s05_file: Path) -> None:
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), device="cpu", batch_size=2))
    assert isinstance(teacher, Teacher)
    assert teacher.name == "espnetv2_s0.5" and teacher.device == "cpu" and teacher.params == EXPECTED_PARAMS[0.5]
    images = np.random.default_rng(0).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    assert teacher.inference_size(50, 70) == (48, 64)
    out = teacher.label(images)
    assert isinstance(out, TeacherOutput)
    assert out.labels.shape == (3, 50, 70) and out.labels.dtype == np.uint8
    assert out.logits.shape == (3, 19, 50, 70) and out.logits.dtype == np.float32
    assert set(np.unique(out.labels)) <= set(range(19)) | {IGNORE_INDEX}
    # batching does not change the answer
    np.testing.assert_array_equal(teacher.label(images[1:2]).labels[0], out.labels[1])
    with pytest.raises(ValueError, match=r"images must be \(B, H, W, 3\)"):
        teacher.label(images[0])
    with pytest.raises(ValueError, match="images must be uint8"):
        teacher.label(images.astype(np.float32))


def test_logits_are_bounded(random_s05_file: Path) -> None:
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), device="cpu", inference_size=(64, 96)))
    out = teacher.label(np.zeros((1, 360, 480, 3), np.uint8))
    assert out.labels.shape == (1, 360, 480)
    assert out.logits.shape == (1, 19, 192, 256)


def test_background_becomes_ignore(random_s05_file: Path) -> None:
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), device="cpu", inference_size=(32, 32)))
    with torch.no_grad():  # make the background channel win everywhere
        teacher.model.bu_dec_l4.merge_layer[3].bias.copy_(torch.tensor([0.0] * 19 + [1e4]))
    out = teacher.label(np.zeros((1, 20, 30, 3), np.uint8))
    assert (out.labels == IGNORE_INDEX).all()


def test_macs_follow_the_inference_size(random_s05_file: Path) -> None:
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), device="cpu"))
    small, large = teacher.macs(352, 480), teacher.macs(704, 960)
    assert small > 0 and 3.6 < large / small < 4.4
    assert round_to_multiple((360, 480), 16) == (368, 480)


def test_gradients_reach_the_input(random_s05_file: Path) -> None:
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(random_s05_file), device="cpu"))
    x = torch.rand(1, 3, 32, 48, requires_grad=True)
    teacher.model(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.model.parameters())


@pytest.mark.shared_data
def test_camvid_accuracy_on_five_frames() -> None:
    cv2 = pytest.importorskip("cv2")
    path = weights_path(2.0)
    frames = sorted((CAMVID / "frames").glob("*.png"))[::20][:5]
    if len(frames) < 5:
        pytest.skip(f"shared data absent: CamVid frames not found under {CAMVID}")
    images = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in frames])
    labels = np.stack([cv2.imread(str(CAMVID / "labels" / f.name), cv2.IMREAD_UNCHANGED) for f in frames])
    teacher = ESPNetv2Teacher(ESPNetv2Config(weights=str(path), inference_size=(352, 480), device="cpu"))
    out = teacher.label(images)
    pred = canonical_to_camvid(unmapped=CAMVID_VOID)(out.labels)  # (5, 360, 480) CamVid classes, 11 = void
    valid = labels != CAMVID_VOID
    accuracy = float((pred[valid] == labels[valid]).mean())
    assert accuracy > 0.8, f"pixel accuracy {accuracy:.3f} on 5 CamVid frames"


def test_reduced_precision_runs(random_s05_file: Path) -> None:
    config = ESPNetv2Config(weights=str(random_s05_file), device="cpu", dtype="bfloat16", inference_size=(32, 48))
    teacher = ESPNetv2Teacher(config)
    assert next(teacher.model.parameters()).dtype == torch.bfloat16
    out = teacher.label(np.zeros((1, 30, 40, 3), np.uint8))
    assert out.labels.shape == (1, 30, 40) and out.logits.dtype == np.float32
    assert teacher.macs(30, 40) > 0
