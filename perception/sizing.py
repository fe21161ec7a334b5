"""Choosing a student for a latency budget: the sizing table and the rule that reads it.

A row of the table holds one student architecture (a name in
:data:`perception.student_nets.STUDENT_NETS`): its MACs and milliseconds per frame at the
table's input sizes (batch 1), its *ceiling* mIoU (the same architecture trained offline on
every sim domain with a generous budget) and its *online* mIoU (the online learner's student of
that architecture on the tour). ``bench/ceiling.py`` measures the whole table and writes it
(``perception/weights/student_sizing.json`` is the shipped copy); ``odistill size --budget-ms X``
prints it, with the milliseconds re-measured on the machine at hand, and names the most
accurate student inside the budget.

Example:
    >>> rows = [SizingRow("tiny", {"256x128": 3.0}, {"256x128": 6e6}, 0.50, 0.45),
    ...         SizingRow("default", {"256x128": 6.0}, {"256x128": 12e6}, 0.60, 0.55)]
    >>> choose_student(rows, budget_ms=5.0, size="256x128").net
    'tiny'
    >>> choose_student(rows, budget_ms=10.0, size="256x128").net
    'default'
    >>> choose_student(rows, budget_ms=1.0, size="256x128")
    Traceback (most recent call last):
    ...
    perception.sizing.NoStudentFits: no student runs within 1 ms per frame at 256x128: the fastest, tiny, takes 3.00 ms
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from perception.nets import count_macs
from perception.student_nets import STUDENT_NETS, build_student_net
from perception.weights import WEIGHTS_DIR

SIZING_TABLE = WEIGHTS_DIR / "student_sizing.json"
SIZES: tuple[str, ...] = ("256x128", "480x352")  # width x height, the two input sizes


class SizingError(ValueError):
    """A sizing table or request is unusable (bad size, bad file)."""


class NoStudentFits(SizingError):
    """No student of the table runs inside the latency budget."""


def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` -> (height, width).

    Example:
        >>> parse_size("480x352")
        (352, 480)
    """
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 32 or int(height) < 32:
        raise SizingError(f"size {text!r}: expected WIDTHxHEIGHT in pixels, each at least 32 (e.g. 256x128)")
    return int(height), int(width)


@dataclass(frozen=True)
class SizingRow:
    """One student architecture's line of the sizing table.

    ms: milliseconds per frame at batch 1 by size ("256x128": ...); macs by size;
    ceiling_miou: the offline-trained ceiling on the tour world; online_miou: the online student there.
    """

    net: str
    ms: dict[str, float]
    macs: dict[str, float]
    ceiling_miou: float | None
    online_miou: float | None
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # per-domain figures, teacher rate, provenance

    def accuracy(self) -> float:
        """What a budget choice ranks by: the online mIoU (what the car will see), else the ceiling."""
        for value in (self.online_miou, self.ceiling_miou):
            if value is not None:
                return float(value)
        return float("-inf")


def measure_latency_ms(net: str | torch.nn.Module, size: str, threads: int = 1, repeats: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of one eval-mode forward pass plus argmax at batch 1 on the CPU.

    ``threads`` torch threads (1 = the run's per-frame prediction setting); the previous thread
    count is restored.

    Example:
        >>> measure_latency_ms("tiny", "64x32", repeats=3, warmup=1) > 0
        True
    """
    height, width = parse_size(size)
    model = build_student_net(net) if isinstance(net, str) else net
    model = model.eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.rand(1, 3, height, width)  # (1, 3, H, W)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(x).argmax(1)  # (1, H, W)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)


def macs(net: str, size: str) -> int:
    """Multiply-accumulates of one forward pass of a fresh ``net`` at ``size``."""
    height, width = parse_size(size)
    return count_macs(build_student_net(net), height, width)


def save_table(rows: list[SizingRow], path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write the table as JSON (``rows`` and ``provenance``: how and where it was measured)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": [asdict(r) for r in rows], "provenance": provenance or {}}, indent=1) + "\n")
    return path


def load_table(path: str | Path = SIZING_TABLE) -> tuple[list[SizingRow], dict[str, Any]]:
    """Read a table written by :func:`save_table`; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SizingError(f"{path}: sizing table not found (bench/ceiling.py writes one)")
    try:
        data = json.loads(path.read_text())
        rows = [SizingRow(**row) for row in data["rows"]]
    except (ValueError, KeyError, TypeError) as error:
        raise SizingError(f"{path}: not a sizing table ({error})") from None
    unknown = [r.net for r in rows if r.net not in STUDENT_NETS]
    if unknown:
        raise SizingError(f"{path}: unknown student net {unknown[0]!r} (choose one of: {', '.join(sorted(STUDENT_NETS))})")
    return rows, data.get("provenance", {})


def choose_student(rows: list[SizingRow], budget_ms: float, size: str = SIZES[0]) -> SizingRow:
    """The most accurate row whose milliseconds at ``size`` fit ``budget_ms`` (ties: the faster)."""
    parse_size(size)
    timed = [r for r in rows if size in r.ms]
    if not timed:
        raise SizingError(f"no row of the sizing table is timed at {size} (sizes: {', '.join(sorted({s for r in rows for s in r.ms}))})")
    inside = [r for r in timed if r.ms[size] <= budget_ms]
    if not inside:
        fastest = min(timed, key=lambda r: r.ms[size])
        raise NoStudentFits(f"no student runs within {budget_ms:g} ms per frame at {size}: the fastest, "
                          f"{fastest.net}, takes {fastest.ms[size]:.2f} ms")
    return max(inside, key=lambda r: (r.accuracy(), -r.ms[size]))


def format_table(rows: list[SizingRow], sizes: tuple[str, ...] = SIZES) -> str:
    """The table as aligned text, one line per student."""
    head = f"{'student':<9}{'params':>9}" + "".join(f"{'ms@' + s:>13}{'MMACs@' + s:>15}" for s in sizes)
    head += f"{'ceiling':>9}{'online':>8}{'online/ceil':>12}"
    lines = [head]
    for r in rows:
        cells = f"{r.net:<9}{r.params:>9}"
        for s in sizes:
            ms = f"{r.ms[s]:.2f}" if s in r.ms else "n/a"
            mm = f"{r.macs[s] / 1e6:.1f}" if s in r.macs else "n/a"
            cells += f"{ms:>13}{mm:>15}"
        ceil = "n/a" if r.ceiling_miou is None else f"{r.ceiling_miou:.3f}"
        online = "n/a" if r.online_miou is None else f"{r.online_miou:.3f}"
        ratio = "n/a" if not (r.ceiling_miou and r.online_miou is not None) else f"{r.online_miou / r.ceiling_miou:.3f}"
        lines.append(cells + f"{ceil:>9}{online:>8}{ratio:>12}")
    return "\n".join(lines)
