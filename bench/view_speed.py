"""Benchmark: the cost of making robustness views on the teacher's side, per labelled frame.

For each frame size (the sim's 256x128 with the sim student, the CamVid clip's 480x360 with the
fast student) it times the teacher part's :class:`~perception.view_maker.ViewMaker` (the
default ``[adversarial]`` settings: PGD-3 at 8/255 with the SegPGD loss on the student copy,
and a worst-of-4 Kornia view with 2 parameter steps) against the baseline of labelling the
same frame with the sim teacher, on ``--device`` (a GPU in ``bench/gpu_check.sh``). Medians
over ``--frames`` frames after a warm-up.

    .venv/bin/python bench/view_speed.py [--device cpu|cuda] [--frames 9]

The last line is one JSON object: per size ``view_ms``, ``teacher_ms`` and their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.teachers.sim import SegNetTeacher  # noqa: E402
from perception.view_maker import ViewMaker  # noqa: E402
from perception.views import ViewConfig  # noqa: E402

SIZES = {"sim 256x128": ((128, 256), "default"), "camvid 480x360": ((360, 480), "fast")}


def median_ms(call, frames: list[np.ndarray], device: str) -> float:
    call(frames[0], 0)  # warm-up
    times = []
    for index, frame in enumerate(frames):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        call(frame, index + 1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=9)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    teacher = SegNetTeacher(device=args.device)
    result = {"device": args.device, "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    for name, ((height, width), net) in SIZES.items():
        frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.frames)]
        maker = ViewMaker(ViewConfig(enabled=True), net, seed=0, device=args.device)
        labels = teacher.label(frames[0][None]).labels[0]
        view_ms = median_ms(lambda frame, index: maker.make(frame, labels, index), frames, args.device)
        teacher_ms = median_ms(lambda frame, index: teacher.label(frame[None]), frames, args.device)
        result[name] = {"view_ms": round(view_ms, 2), "teacher_ms": round(teacher_ms, 2),
                        "view_over_teacher": round(view_ms / teacher_ms, 3)}
        print(f"{name} on {args.device}: views {view_ms:.1f} ms per labelled frame, baseline the sim teacher's labelling "
              f"{teacher_ms:.1f} ms, ratio {view_ms / teacher_ms:.2f}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
