"""One device resolver for every teacher, student and training command."""
import pytest
import torch

from perception.device import DeviceError, resolve_device

NO_GPU = not torch.cuda.is_available()


def test_auto_and_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "tpu", "", "cuda:x", "meta", "cpu:3"])
def test_unknown_names_are_refused_by_setting_and_value(name):
    with pytest.raises(DeviceError, match=rf"^student.device: unknown device {name!r} \(choose auto, cpu, cuda, cuda:N or mps\)$"):
        resolve_device(name, setting="student.device")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_a_gpu_asked_for_without_one_is_an_error_not_a_fallback(name):
    with pytest.raises(DeviceError, match=rf"--device: '{name}' asked for, but no CUDA GPU is available here"):
        resolve_device(name, setting="--device")


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_a_gpu_index_past_the_last_is_an_error():
    with pytest.raises(DeviceError, match="CUDA GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_teachers_resolve_through_it():
    from perception.teachers import open_teacher

    assert open_teacher("sim", device="cpu").device == "cpu"
    with pytest.raises(DeviceError, match="teacher.device: unknown device 'gpu'"):
        open_teacher("sim", device="gpu")
