"""``report.png``: windowed student and teacher mIoU over frames with domain bands and drift
marks, the student's robust mIoU (when the run tracks it: ``evaluator.robust_every``), and the
teacher rate underneath."""
from __future__ import annotations

from pathlib import Path
from typing import Any

BAND_COLOURS = ("#e8f1fb", "#fdf0e0", "#eaf6ea", "#f6e9f4", "#fffbe0", "#eef0f0", "#e0f4f7", "#f9e6e6")


def domain_spans(domains: list[tuple[int, str]], end: int | None = None) -> list[tuple[int, int, str]]:
    """[(first_frame, domain), ...] in frame order -> [(start, end, domain), ...] merged runs.

    The last run ends at ``end`` (the frames of the run) when given and past its start,
    else one step (the gap between the first two starts, or 1) after its start.

    Example:
        >>> domain_spans([(0, "a"), (100, "a"), (200, "b")])
        [(0, 200, 'a'), (200, 300, 'b')]
        >>> domain_spans([(0, "log")], end=40)
        [(0, 40, 'log')]
    """
    spans: list[tuple[int, int, str]] = []
    step = domains[1][0] - domains[0][0] if len(domains) > 1 else 1
    for start, name in domains:
        if spans and spans[-1][2] == name:
            spans[-1] = (spans[-1][0], start + step, name)
        else:
            spans.append((start, start + step, name))
    if spans and end is not None and end > spans[-1][0]:
        spans[-1] = (spans[-1][0], end, spans[-1][2])
    return spans


def window_edges(metrics: list[dict[str, Any]]) -> list[int]:
    """The frame edges of consecutive windows: the first window's start, then every window's end.

    A window covers ``frames`` frames ending at ``frame_end``; a last, partial window is
    shorter than the others.

    Example:
        >>> window_edges([{"frame_end": 100, "frames": 100}, {"frame_end": 130, "frames": 30}])
        [0, 100, 130]
    """
    if not metrics:
        return []
    first = metrics[0]
    return [max(0, first["frame_end"] - int(first.get("frames") or 0))] + [row["frame_end"] for row in metrics]


def robust_series(metrics: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """The robustness panel's lines from the windows: clean mIoU on the robustness frames,
    mIoU under each PGD radius, the worst-of-k Kornia view and the mean over the presets
    scored one by one; against the ground truth where the windows have it, else against the
    teacher's labels.

    Example:
        >>> rows = [{"frame_end": 100, "student_clean_miou_on_robust_frames": 0.8, "student_robust_miou": {"4/255": 0.2},
        ...          "student_corrupt_miou": {"rain": 0.6, "snow": 0.4, "worst_of_k": 0.3}}]
        >>> robust_series(rows)["PGD 4/255"], robust_series(rows)["Kornia presets (mean)"]
        ([(100, 0.2)], [(100, 0.5)])
    """
    series: dict[str, list[tuple[int, float]]] = {}
    truth = any(row.get("student_clean_miou_on_robust_frames") is not None for row in metrics)
    suffix = "" if truth else "_vs_teacher"
    for row in metrics:
        end = row["frame_end"]
        clean = row.get("student_clean_miou_on_robust_frames" if truth else "student_clean_miou_vs_teacher_on_robust_frames")
        if clean is not None:
            series.setdefault("clean (same frames)", []).append((end, clean))
        for radius, value in (row.get(f"student_robust_miou{suffix}") or {}).items():
            if value is not None:
                series.setdefault(f"PGD {radius}", []).append((end, value))
        corrupt = {k: v for k, v in (row.get(f"student_corrupt_miou{suffix}") or {}).items() if v is not None}
        if "worst_of_k" in corrupt:
            series.setdefault("Kornia worst-of-k", []).append((end, corrupt.pop("worst_of_k")))
        if corrupt:
            series.setdefault("Kornia presets (mean)", []).append((end, sum(corrupt.values()) / len(corrupt)))
    return series


def write_report(path: str | Path, metrics: list[dict[str, Any]], events: list[dict[str, Any]],
                 domain_starts: list[tuple[int, str]], true_shifts: list[int], title: str) -> Path:
    """Draw the two-panel report from the rows of metrics.jsonl and events.jsonl."""
    import matplotlib  # here, not at import: only the driver draws, and pyplot costs every Ray actor 0.2 s

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    robust = robust_series(metrics)
    if robust:
        fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 8.5), sharex=True,
                                                  gridspec_kw={"height_ratios": [3, 2, 1]})
        axes = (top, middle, bottom)
    else:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        axes = (top, bottom)
    edges = window_edges(metrics)
    if domain_starts:
        spans = domain_spans(domain_starts, end=edges[-1] if edges else None)
        for i, (start, end, name) in enumerate(spans):
            for axis in axes:
                axis.axvspan(start, end, color=BAND_COLOURS[i % len(BAND_COLOURS)], lw=0)
            top.text((start + end) / 2, 1.01, name, ha="center", va="bottom", fontsize=8, transform=top.get_xaxis_transform())
    x = [row["frame_end"] for row in metrics]
    for key, colour, label in (("student_miou", "tab:blue", "student (prequential)"), ("teacher_miou", "tab:orange", "teacher"),
                               ("student_vs_teacher_miou", "tab:green", "student vs teacher")):
        ys = [row.get(key) for row in metrics]
        pts = [(a, b) for a, b in zip(x, ys) if b is not None]
        if len(pts) == 1:  # one window (a short log): its value across the frames it covers
            top.hlines(pts[0][1], edges[0], edges[-1], color=colour, label=label, lw=1.5)
            top.plot(*pts[0], color=colour, marker="o", ms=5)
        elif pts:
            top.plot(*zip(*pts), color=colour, label=label, lw=1.5, marker=".", ms=3)
    for shift in true_shifts:
        top.axvline(shift, color="black", ls=":", lw=1)
    drift_x = [e["index"] for e in events if e.get("kind") == "drift"]
    for i, d in enumerate(drift_x):
        top.axvline(d, color="red", lw=1, alpha=0.7, label="drift detected" if i == 0 else None)
    top.set_ylim(0, 1)
    top.set_ylabel("mIoU (window)")
    top.legend(loc="lower left", fontsize=8)
    top.set_title(title, pad=16)
    if robust:
        styles = {"clean (same frames)": ("black", "-")}
        for name, points in robust.items():
            colour, line = styles.get(name, (None, "--" if name.startswith("PGD") else "-"))
            middle.plot(*zip(*points), color=colour, ls=line, label=name, lw=1.2, marker=".", ms=3)
        middle.set_ylim(0, 1)
        middle.set_ylabel("robust mIoU (window)")
        middle.legend(loc="upper left", fontsize=7, ncol=3)
    rates = [row.get("teacher_rate") for row in metrics]
    if rates:  # each window's rate over the frames it covers
        bottom.stairs([r if r is not None else 0 for r in rates], edges, baseline=None, color="tab:purple")
    if edges:
        start = min(edges[0], domain_starts[0][0] if domain_starts else edges[0])
        top.set_xlim(start, edges[-1] + max(1.0, 0.01 * (edges[-1] - start)))  # room for the last marker
    bottom.set_ylabel("teacher rate")
    bottom.set_xlabel("frame")
    bottom.set_ylim(0, max([r or 0 for r in rates] + [0.1]) * 1.15)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
