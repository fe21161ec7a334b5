"""The learner's batch-1 prediction (image in, uint8 labels out) on the default tour's frames.

    .venv/bin/python bench/predict.py [--frames 64] [--repeats 7]

Baseline: the full-size logits of the net's forward, then ``torch.argmax`` over the classes
(what the learner did before ``perception.argmax``). Ours: ``OnlineLearner.predict``, which
takes the coarse logits and the numba upsampling-argmax. Both on the same frames, alternating,
on one thread (where both runners predict by default, ``run.inference_threads()``) and on
two (torch's default on this machine). Prints milliseconds per frame (medians) and the ratio; the last line is one
JSON object with the figures.
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

from learners.online import OnlineLearner  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.builders import build_student  # noqa: E402
from stream.sources import open_source  # noqa: E402


def ms_per_frame(predict, images: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for image in images:
        predict(image)
    return (time.perf_counter() - started) / len(images) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = load_config(None, [])
    learner = OnlineLearner(config.online, build_student(config), seed=0)
    source = open_source(config.run.source, config)
    images = [frame.image for frame, _ in zip(source, range(args.frames))]
    source.close()

    def baseline(image: np.ndarray) -> np.ndarray:
        return learner.predict_logits(image)[0].argmax(0).to(torch.uint8).numpy()  # (H, W)

    agree = float(np.mean([np.mean(baseline(im) == learner.predict(im)) for im in images]))
    figures: dict[str, float] = {"frames": len(images), "height": images[0].shape[0], "width": images[0].shape[1],
                                 "label_agreement": agree}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timings: dict[str, list[float]] = {"baseline": [], "ours": []}
        for _ in range(args.repeats):
            timings["baseline"].append(ms_per_frame(baseline, images))
            timings["ours"].append(ms_per_frame(learner.predict, images))
        base, ours = statistics.median(timings["baseline"]), statistics.median(timings["ours"])
        print(f"{threads} thread(s): forward + torch.argmax (baseline) {base:.2f} ms · ours {ours:.2f} ms "
              f"· {base / ours:.2f}x faster")
        figures.update({f"baseline_ms_{threads}t": base, f"ours_ms_{threads}t": ours, f"speedup_{threads}t": base / ours})
    print(f"labels identical on {agree:.6f} of the pixels")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
