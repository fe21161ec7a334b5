"""Ingest benchmark: our video source against a bare OpenCV decode loop, same process.

Baseline (the limit): ``cv2.VideoCapture.read`` into a reused buffer + ``cvtColor`` to RGB,
OpenCV's default decoder threads. Also printed: the same loop with our source's decoder
threads (one per core plus one), to show what of the difference is the thread count.
Ours: :func:`stream.sources.video.open_video`, producing read-only RGB ``Frame`` records.
Both decode the same file in alternating repeats; the figures are medians of frames/s.
Target: ours >= 0.8 x the baseline. The last line printed is one JSON object.

Run: ``.venv/bin/python bench/ingest.py [--path FILE] [--repeats N]``
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream.sources.video import default_decoder_threads, open_video  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "logs" / "udacity_solidWhiteRight.mp4"


def _opencv_once(path: str | Path, threads: int = 0) -> tuple[int, float]:
    """Frames decoded and seconds taken by the bare loop, once (``threads`` decoder threads;
    0: OpenCV's default, the baseline)."""
    start = time.perf_counter()
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads]) if threads else cv2.VideoCapture(str(path))
    frames, buffer, rgb = 0, None, None
    while True:
        ok, buffer = capture.read(buffer)
        if not ok:
            break
        rgb = cv2.cvtColor(buffer, cv2.COLOR_BGR2RGB)  # (H, W, 3)
        frames += 1
    capture.release()
    del rgb
    return frames, time.perf_counter() - start


def _source_once(path: str | Path) -> tuple[int, float]:
    """Frames produced and seconds taken by our video source (open included), once."""
    start = time.perf_counter()
    frames = 0
    with open_video(path) as source:
        for _frame in source:
            frames += 1
    return frames, time.perf_counter() - start


def measure_opencv_fps(path: str | Path = DEFAULT_VIDEO, repeats: int = 5, threads: int = 0) -> float:
    """Median frames/s of the bare OpenCV loop (read + BGR->RGB) over ``repeats`` runs."""
    return statistics.median(n / s for n, s in (_opencv_once(path, threads) for _ in range(repeats)))



def measure_source_fps(path: str | Path = DEFAULT_VIDEO, repeats: int = 5) -> float:
    """Median frames/s of our video source producing Frames over ``repeats`` runs."""
    return statistics.median(n / s for n, s in (_source_once(path) for _ in range(repeats)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT_VIDEO), help="video file to decode")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (medians reported)")
    args = parser.parse_args(argv)
    path = Path(args.path)
    if not path.is_file():
        print(f"video not found: {path} (the shared data is absent)")
        print(json.dumps({"skipped": f"missing {path}"}))
        return 0
    _opencv_once(path)  # warm the file cache and the decoder libraries
    opencv, opencv_same, ours = [], [], []
    frame_counts = set()
    for _ in range(args.repeats):  # alternate so drift on a shared machine hits all alike
        n, s = _opencv_once(path)
        opencv.append(n / s)
        n, s = _opencv_once(path, default_decoder_threads())
        opencv_same.append(n / s)
        m, t = _source_once(path)
        ours.append(m / t)
        frame_counts |= {n, m}
    opencv_fps, source_fps = statistics.median(opencv), statistics.median(ours)
    same_fps = statistics.median(opencv_same)
    ratio = source_fps / opencv_fps
    height, width = cv2.VideoCapture(str(path)).read()[1].shape[:2]
    print(f"video: {path.name} {width}x{height}, frames per run: {sorted(frame_counts)}, repeats: {args.repeats}")
    print(f"bare OpenCV (read + cvtColor): {opencv_fps:8.1f} frames/s  (runs: {', '.join(f'{v:.0f}' for v in opencv)})")
    print(f"our video source (Frames):     {source_fps:8.1f} frames/s  (runs: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"bare OpenCV with our decoder's {default_decoder_threads()} threads: {same_fps:8.1f} frames/s  (runs: {', '.join(f'{v:.0f}' for v in opencv_same)})")
    print(f"ratio ours / bare: {ratio:.3f} (target >= 0.8); ours / bare at the same threads: {source_fps / same_fps:.3f}")
    print(json.dumps({
        "video": path.name, "frames": max(frame_counts), "repeats": args.repeats,
        "opencv_fps": round(opencv_fps, 1), "source_fps": round(source_fps, 1), "ratio": round(ratio, 3),
        "opencv_same_threads_fps": round(same_fps, 1), "ratio_same_threads": round(source_fps / same_fps, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
