"""Teacher and student inference speed (frames/s) at the run's frame size, on the chosen device.

    python bench/teacher_speed.py [--device auto] [--height 128 --width 256]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def frames_per_second(fn, images: np.ndarray, repeats: int, sync) -> float:
    for _ in range(3):
        fn(images)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(images)
        sync()
        times.append(time.perf_counter() - t0)
    return len(images) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from perception.teachers.sim import SegNetTeacher
    from perception.nets import STUDENT_CONFIG

    teacher = SegNetTeacher(device=args.device)
    sync = torch.cuda.synchronize if teacher.device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    result = {"device": teacher.device, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    for batch in (1, 16):
        images = rng.integers(0, 255, (batch, args.height, args.width, 3), dtype=np.uint8)
        result[f"teacher_fps_batch{batch}"] = frames_per_second(teacher.label, images, args.repeats, sync)
    student = SegNetTeacher(weights=None, device="cpu", net=STUDENT_CONFIG, name="student")
    images = rng.integers(0, 255, (1, args.height, args.width, 3), dtype=np.uint8)
    result["student_cpu_fps_batch1"] = frames_per_second(student.label, images, args.repeats, lambda: None)
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
