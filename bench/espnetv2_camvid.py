"""ESPNetv2 (s=2.0, Cityscapes) teacher on the 101 labelled CamVid 0016E5 frames.

For each setting the teacher labels every 480x360 frame (batch 1, timed per frame):

- resize policy: the frame is resized bilinearly to the inference size (960x704: x2.0
  horizontally, x1.956 vertically; 480x352: a slight vertical squash, antialiased); the
  network's stride-2 logits are upsampled bilinearly (corners aligned, its own convention)
  straight to the label's 480x360 and the argmax is taken there;
- the 19 canonical classes map to CamVid's 11 with ``perception.labels.canonical_to_camvid``;
  the teacher's background (255) counts as a wrong prediction (CamVid void = 11);
- pixels labelled void (11) are ignored; pixel accuracy = correct / valid pixels; mIoU =
  nanmean over the 11 classes of IoU, classes with an empty union left out. The confusion
  matrix (11 x 12, last column = void prediction) is counted by ``perception.evaluator``'s
  numba ``confusion_update`` and scored by ``perception.metrics`` when those modules exist,
  and always also with a plain numpy bincount; the script checks that both agree.

Baseline: the figures an independent implementation measured on the same frames (quoted
from the data README, not re-run here); we print ours, the reference and ours/reference.
For scale, the s=0.5 checkpoint at 480x352 is measured in the same run.

Run: ``.venv/bin/python bench/espnetv2_camvid.py`` (about 2 minutes on 2 CPU cores).
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perception.labels import CAMVID_CLASS_NAMES, CAMVID_VOID, canonical_to_camvid  # noqa: E402
from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher  # noqa: E402

try:  # the project's numba evaluator and metrics, where they exist
    from perception import metrics as _metrics  # noqa: E402
    from perception.evaluator import confusion_update as _confusion_update  # noqa: E402
except ImportError:  # pragma: no cover - plain numpy only
    _metrics, _confusion_update = None, None

DATA = ROOT.parent / "shared" / "data"
LOG = DATA / "logs" / "camvid_0016E5_15hz"
CAMVID_CLASSES = len(CAMVID_CLASS_NAMES)  # 11; 11 = void
REFERENCE = {  # independent implementation, same frames, 2 CPU cores (data README)
    (704, 960): {"pixel_acc": 0.872, "miou": 0.577, "s_per_frame": 0.63},
    (352, 480): {"pixel_acc": 0.872, "miou": 0.555, "s_per_frame": 0.16},
}


def load_frames(limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """All frames and labels, sorted by name. Shape: (N, 360, 480, 3) uint8, (N, 360, 480) uint8."""
    paths = sorted((LOG / "frames").glob("*.png"))[:limit]
    images, labels = [], []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        label = cv2.imread(str(LOG / "labels" / path.name), cv2.IMREAD_UNCHANGED)
        if bgr is None or label is None:
            raise SystemExit(f"cannot read {path} or its label")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        labels.append(label)
    return np.stack(images), np.stack(labels)


def camvid_table() -> np.ndarray:
    """Canonical label (0..18, 255) -> CamVid class (0..10, 11 = void)."""
    return canonical_to_camvid(unmapped=CAMVID_VOID).table  # (256,)


def confusion(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """(n+1) x (n+1) counts, rows = ground truth, columns = prediction (n = void).

    Shape: gt (H, W) uint8, pred (H, W) uint8 -> (n+1, n+1) int64
    """
    k = n + 1
    return np.bincount(gt.astype(np.int64).ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)


def scores(cm: np.ndarray, n: int) -> dict[str, float]:
    """Pixel accuracy and nanmean IoU over the n classes, void ground truth ignored.

    Shape: cm (n+1, n+1) or (n, n+1) int64 -> scalars and (n,) IoU
    """
    valid = cm[:n]  # rows with a real ground-truth class; columns include predicted void
    if _metrics is not None:
        return {"pixel_acc": _metrics.pixel_accuracy(valid), "miou": _metrics.mean_iou(valid), "iou": _metrics.iou_per_class(valid)}
    tp = np.diag(valid[:, :n]).astype(np.float64)
    union = valid.sum(1) + valid[:, :n].sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return {"pixel_acc": float(tp.sum() / valid.sum()), "miou": float(np.nanmean(iou)), "iou": iou}


def run(weights: Path, size: tuple[int, int], images: np.ndarray, labels: np.ndarray, device: str, dtype: str) -> dict:
    config = ESPNetv2Config(weights=str(weights), inference_size=size, device=device, batch_size=1, dtype=dtype)
    teacher = ESPNetv2Teacher(config)
    table = camvid_table()
    teacher.label(images[:1])  # warm-up
    cm = np.zeros((CAMVID_CLASSES + 1,) * 2, np.int64)  # numpy reference, (12, 12)
    cm_numba = np.zeros((CAMVID_CLASSES, CAMVID_CLASSES + 1), np.int64)  # evaluator layout, (11, 12)
    seconds = []
    for image, label in zip(images, labels):
        start = time.perf_counter()
        out = teacher.label(image[None])
        seconds.append(time.perf_counter() - start)
        pred = table[out.labels[0]]  # (360, 480) CamVid classes, 11 = void
        cm += confusion(label, pred, CAMVID_CLASSES)
        if _confusion_update is not None:
            _confusion_update(cm_numba, label, pred, CAMVID_CLASSES)
    if _confusion_update is not None and not np.array_equal(cm_numba, cm[:CAMVID_CLASSES]):
        raise SystemExit("perception.evaluator.confusion_update disagrees with the numpy bincount")
    result = scores(cm, CAMVID_CLASSES)
    result["s_per_frame"] = float(np.median(seconds))
    result["gmacs"] = teacher.macs(*images.shape[1:3]) / 1e9
    result["params"] = teacher.params
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--device", default="cpu", help="torch device for the teacher (the reference figures are CPU)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    if not LOG.is_dir():
        raise SystemExit(f"CamVid frames not found at {LOG} (../shared/data is absent)")
    torch.set_num_threads(2)
    images, labels = load_frames(args.frames)
    teachers = DATA / "teachers"
    print(f"{len(images)} frames {images.shape[2]}x{images.shape[1]}, torch threads {torch.get_num_threads()}, "
          f"confusion counted by {'perception.evaluator (numba) + numpy check' if _confusion_update else 'numpy bincount'}")
    summary: dict[str, object] = {"frames": len(images), "device": args.device, "dtype": args.dtype}
    with torch.inference_mode():
        for tag, weights, size in (
            ("s2.0_960x704", teachers / "espnetv2_s2.0_cityscapes.safetensors", (704, 960)),
            ("s2.0_480x352", teachers / "espnetv2_s2.0_cityscapes.safetensors", (352, 480)),
            ("s0.5_480x352", teachers / "espnetv2_s0.5_cityscapes.safetensors", (352, 480)),
        ):
            r = run(weights, size, images, labels, args.device, args.dtype)
            ious = " ".join(f"{name}={v:.2f}" for name, v in zip(CAMVID_CLASS_NAMES, r["iou"]))
            print(f"{tag}: pixel acc {r['pixel_acc']:.4f}  mIoU {r['miou']:.4f}  {r['s_per_frame']:.3f} s/frame (median)  "
                  f"{r['gmacs']:.2f} GMACs  {r['params']} params")
            print(f"    per-class IoU: {ious}")
            entry = {k: round(r[k], 4) for k in ("pixel_acc", "miou", "s_per_frame", "gmacs")}
            ref = REFERENCE.get(size) if tag.startswith("s2.0") else None
            if ref is not None:
                for key in ("pixel_acc", "miou", "s_per_frame"):
                    entry[f"ref_{key}"] = ref[key]
                    entry[f"ratio_{key}"] = round(r[key] / ref[key], 4)
                print(f"    reference (independent implementation): pixel acc {ref['pixel_acc']}  mIoU {ref['miou']}  "
                      f"{ref['s_per_frame']} s/frame; ratio ours/ref: acc {entry['ratio_pixel_acc']:.3f}  "
                      f"mIoU {entry['ratio_miou']:.3f}  time {entry['ratio_s_per_frame']:.2f}")
            summary[tag] = entry
    main_entry = summary["s2.0_960x704"]
    summary["targets_met"] = bool(main_entry["pixel_acc"] >= 0.86 and main_entry["miou"] >= 0.55)  # type: ignore[index]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
