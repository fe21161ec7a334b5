import pytest
import torch

from perception.nets import STUDENT_CONFIG, TEACHER_CONFIG, SegNet, count_macs, count_params
from perception.weights import CheckpointError, load_weights, save_weights


def test_student_is_at_most_a_tenth_of_the_teacher():
    teacher, student = SegNet(TEACHER_CONFIG), SegNet(STUDENT_CONFIG)
    assert count_macs(student, 128, 256) * 10 <= count_macs(teacher, 128, 256)
    assert count_params(teacher) * 4 <= 10 * 1024 * 1024  # float32 weights fit the 10 MB budget


def test_macs_counts_a_plain_conv_exactly():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    assert count_macs(net, 10, 12) == 10 * 12 * 8 * 3 * 9


def test_logits_at_input_size_and_gradients_flow():
    net = SegNet(STUDENT_CONFIG)
    x = torch.rand(2, 3, 64, 96, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 19, 64, 96)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_weights_round_trip_and_mismatch_named(tmp_path):
    net = SegNet(STUDENT_CONFIG)
    path = save_weights(net, tmp_path / "s.safetensors")
    other = load_weights(SegNet(STUDENT_CONFIG), path)
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="tensor 'stem.0.weight' has shape"):
        load_weights(SegNet(TEACHER_CONFIG), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(net, tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_weights(net, tmp_path / "bad.safetensors")
