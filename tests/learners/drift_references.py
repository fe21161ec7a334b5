"""Pure-python references of the drift detectors' numba paths, written from the textbook
definitions; tests compare the kernels against them exactly (imported by test_drift.py,
test_input_stats.py and test_drift_conformance.py)."""
from __future__ import annotations

import math

import numpy as np

from learners.input_stats import InputDriftConfig, InputStatsTracker


class RefPageHinkley:
    """Page-Hinkley in plain python, written from the textbook definition."""

    def __init__(self, min_instances, delta, threshold, alpha, mode):
        self.p = (min_instances, delta, threshold, alpha, mode)
        self.flag = False
        self._restart()

    def _restart(self):
        self.n, self.mean, self.up, self.up_min, self.down, self.down_max = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def update(self, x):
        min_instances, delta, threshold, alpha, mode = self.p
        if self.flag:
            self._restart()
        self.n += 1
        self.mean = self.mean + (x - self.mean) / self.n
        self.up = alpha * self.up + (x - self.mean) - delta
        self.down = alpha * self.down + (x - self.mean) + delta
        self.up_min = min(self.up_min, self.up)
        self.down_max = max(self.down_max, self.down)
        self.flag = False
        if self.n >= min_instances:
            if mode in ("up", "both") and self.up - self.up_min > threshold:
                self.flag = True
            if mode in ("down", "both") and self.down_max - self.down > threshold:
                self.flag = True
        return self.flag


class RefADWIN:
    """ADWIN2 in plain python: a list of rows, each a list of [total, m2] buckets (oldest first)."""

    def __init__(self, delta, clock, max_buckets, min_len, grace, mode):
        self.delta, self.clock, self.max_buckets, self.min_len, self.grace, self.mode = delta, clock, max_buckets, min_len, grace, mode
        self.rows = []
        self.width, self.total, self.m2, self.tick = 0, 0.0, 0.0, 0

    def _insert(self, x):
        if self.width > 0:
            d = x - self.total / self.width
            self.m2 += self.width * d * d / (self.width + 1)
        self.total += x
        self.width += 1
        if not self.rows:
            self.rows.append([])
        self.rows[0].append([x, 0.0])
        r = 0
        while len(self.rows[r]) > self.max_buckets:
            size = 2.0**r
            (t0, v0), (t1, v1) = self.rows[r][0], self.rows[r][1]
            d = t0 / size - t1 / size
            del self.rows[r][:2]
            if r + 1 == len(self.rows):
                self.rows.append([])
            self.rows[r + 1].append([t0 + t1, v0 + v1 + size * d * d / 2.0])
            r += 1

    def _delete_oldest(self):
        r = len(self.rows) - 1
        size = 2**r
        t, v = self.rows[r].pop(0)
        rest = self.width - size
        if rest > 0:
            d = t / size - (self.total - t) / rest
            self.m2 -= v + size * rest * d * d / self.width
            self.m2 = max(self.m2, 0.0)
            self.total -= t
        else:
            self.m2, self.total = 0.0, 0.0
        self.width = rest
        while self.rows and not self.rows[-1]:
            self.rows.pop()

    def _cut(self, n0, n1, diff):
        log_term = math.log(2.0 * math.log(self.width) / self.delta)
        m_recip = 1.0 / n0 + 1.0 / n1
        variance = self.m2 / self.width
        return abs(diff) > math.sqrt(2.0 * m_recip * variance * log_term) + 2.0 / 3.0 * m_recip * log_term

    def _detect(self):
        directions = set()
        while True:
            n0, n1, u0, u1 = 0, self.width, 0.0, self.total
            buckets = [(2**r, t) for r in range(len(self.rows) - 1, -1, -1) for t, _ in self.rows[r]]
            cut = False
            for size, t in buckets:
                n0, n1, u0, u1 = n0 + size, n1 - size, u0 + t, u1 - t
                if n1 <= 0:
                    break
                if n0 >= self.min_len and n1 >= self.min_len and self._cut(n0, n1, u1 / n1 - u0 / n0):
                    directions.add("up" if u1 / n1 - u0 / n0 > 0 else "down")
                    self._delete_oldest()
                    cut = self.width > 0
                    break
            if not cut:
                return directions

    def update(self, x):
        self._insert(x)
        self.tick += 1
        if self.tick % self.clock == 0 and self.width >= self.grace:
            found = self._detect()
            return bool(found) and (self.mode == "both" or self.mode in found)
        return False


def reference_statistics(image: np.ndarray) -> np.ndarray:
    """Plain numpy version of frame_statistics."""
    rgb = image.astype(np.float64)  # (H, W, 3)
    h = image.shape[0]
    out = []
    for band in range(3):
        part = rgb[band * h // 3: (band + 1) * h // 3]  # (h', W, 3)
        luma = (299 * part[..., 0] + 587 * part[..., 1] + 114 * part[..., 2]) / 1000.0  # (h', W)
        top, bottom = part.max(axis=2), part.min(axis=2)
        saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1), 0.0)
        out += [
            part[..., 0].mean() / 255, part[..., 1].mean() / 255, part[..., 2].mean() / 255,
            luma.std() / 255, bottom.mean() / 255, saturation.mean(),
            np.abs(np.diff(luma, axis=1)).mean() / 255,
        ]
    return np.array(out)


class RefInputDriftMonitor:
    """InputDriftMonitor with the numpy frame statistics and the python Page-Hinkley."""

    def __init__(self, config: InputDriftConfig = InputDriftConfig()):
        d = config.detector
        self.tracker = InputStatsTracker(config.stats)
        self.make_test = lambda: RefPageHinkley(d.min_instances, d.delta, d.threshold, d.alpha, d.mode)
        self.test = self.make_test()

    def update(self, image):
        novelty = self.tracker.update(reference_statistics(image))
        if novelty is None:
            return False
        if self.test.update(novelty):
            self.tracker.reset()
            self.test = self.make_test()
            return True
        return False
