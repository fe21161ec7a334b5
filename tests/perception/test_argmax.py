"""perception.argmax: numba class labels against torch's argmax and bilinear upsampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learners.configs import OnlineConfig
from learners.online import OnlineLearner
from perception.argmax import class_labels, upsampled_class_labels
from perception.student_nets import STUDENT_NETS, build_student_net
from perception.teachers.common import images_to_tensor
from stream.config import load_config
from stream.sources import open_source


def torch_labels(logits: torch.Tensor) -> np.ndarray:
    return logits.argmax(-3).to(torch.uint8).numpy()


@pytest.mark.parametrize("shape", [(19, 16, 24), (2, 19, 8, 12), (3, 2, 5, 4, 6), (1, 1, 3)])
def test_class_labels_match_torch_on_planar_logits(shape):
    torch.manual_seed(0)
    logits = torch.randn(shape)
    assert np.array_equal(class_labels(logits), torch_labels(logits))


def test_class_labels_read_channels_last_logits_in_place():
    torch.manual_seed(1)
    logits = torch.randn(2, 19, 10, 14).contiguous(memory_format=torch.channels_last)
    assert not logits.is_contiguous()
    assert np.array_equal(class_labels(logits), torch_labels(logits))


def test_ties_take_the_first_class_and_nan_wins_as_in_torch():
    logits = torch.zeros(4, 2, 3)  # every class tied: class 0
    logits[2, 0, 1] = 5.0
    logits[3, 0, 1] = 5.0  # tie between 2 and 3: 2
    logits[1, 1, 0] = float("nan")
    logits[3, 1, 0] = float("nan")  # first NaN wins: 1
    logits[3, 1, 2] = float("nan")  # a NaN beats any number
    labels = class_labels(logits)
    assert np.array_equal(labels, torch_labels(logits))
    assert labels.tolist() == [[0, 2, 0], [1, 0, 3]]


def test_class_labels_refuse_wrong_shapes():
    with pytest.raises(ValueError, match="need"):
        class_labels(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="uint8"):
        class_labels(torch.zeros(300, 2, 2))
    with pytest.raises(ValueError, match="uint8"):
        upsampled_class_labels(torch.zeros(300, 2, 2), 4, 4)
    with pytest.raises(ValueError, match="uint8"):
        class_labels(torch.zeros(0, 2, 2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int32])
def test_other_dtypes_give_torch_labels(dtype):
    """float64 is read as it is (no rounding to float32 that could make ties); the rest goes to torch."""
    logits = torch.tensor([[[1.0, 3.0]], [[1.0 + 1e-12, 3.0]]], dtype=torch.float64).to(dtype)  # (2, 1, 2)
    assert np.array_equal(class_labels(logits), torch_labels(logits))
    coarse = (torch.randn(19, 4, 6) * 100).to(dtype)
    if dtype == torch.float64:
        assert class_labels(logits)[0, 0] == 1  # 1 + 1e-12 wins in float64
        full = F.interpolate(coarse[None], size=(8, 12), mode="bilinear", align_corners=False)[0]
        assert np.array_equal(upsampled_class_labels(coarse, 8, 12), class_labels(full))


def test_empty_maps_and_one_pixel_grids():
    assert class_labels(torch.zeros(0, 19, 4, 4)).shape == (0, 4, 4)
    assert class_labels(torch.zeros(19, 0, 4)).shape == (0, 4)
    torch.manual_seed(3)
    one = torch.randn(19, 1, 1)  # a single coarse pixel: every output pixel takes its class
    assert np.array_equal(upsampled_class_labels(one, 3, 5), np.full((3, 5), int(one.argmax()), np.uint8))


@pytest.mark.parametrize("size_in,size_out", [((16, 32), (64, 128)), ((32, 64), (64, 128)), ((45, 60), (360, 480)),
                                              ((30, 40), (37, 53)), ((8, 8), (8, 8)), ((10, 12), (5, 7))])
def test_upsampled_labels_match_interpolate_then_argmax(size_in, size_out):
    """Same labels as F.interpolate + argmax wherever the two best classes are apart by more
    than float rounding (the kernel adds the same products in another order)."""
    torch.manual_seed(2)
    coarse = torch.randn(2, 19, *size_in)
    full = F.interpolate(coarse, size=size_out, mode="bilinear", align_corners=False)  # (2, 19, H, W)
    ours = upsampled_class_labels(coarse, *size_out)
    reference = torch_labels(full)
    top2 = full.topk(2, dim=1).values  # (2, 2, H, W)
    clear = (top2[:, 0] - top2[:, 1]).numpy() > 1e-4
    assert ours.shape == reference.shape == (2,) + size_out
    assert np.array_equal(ours[clear], reference[clear])
    assert (ours != reference).mean() < 1e-3


def sim_frames(count: int) -> list[np.ndarray]:
    """The first frames of the default tour (its size: 256x128)."""
    source = open_source("sim:tour", load_config(None, ["run.seed=3"]))
    try:
        return [frame.image for frame, _ in zip(source, range(count))]
    finally:
        source.close()


@pytest.mark.parametrize("name", sorted(STUDENT_NETS))
def test_learner_prediction_is_the_argmax_of_the_full_size_logits(name):
    """The fast path (coarse logits, fused upsampling) predicts what the net's forward says,
    for every student net, on rendered frames."""
    torch.manual_seed(0)
    learner = OnlineLearner(OnlineConfig(), build_student_net(name), seed=0)
    for image in sim_frames(3):
        with torch.inference_mode():
            full = learner.predictor.eval()(images_to_tensor(image[None]))[0]  # (K, H, W)
        prediction = learner.predict(image)
        assert prediction.dtype == np.uint8 and prediction.shape == image.shape[:2]
        assert (prediction != class_labels(full)).mean() < 1e-4
