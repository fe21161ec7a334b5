"""bench/static.py end to end at toy size: stops, segments, the frozen copy, the JSON line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import static  # noqa: E402

TOY = ["--worlds", "100981", "--frames", "30", "--stop-every", "1.0", "--stop-seconds", "0.5", "--segment", "10",
       "--set", "sim.width=64", "--set", "sim.height=32", "--set", "sim.ego_speed=2.0",
       "--set", "online.steps_per_label=1"]


def test_the_bench_runs_end_to_end_and_ends_with_one_json_line(tmp_path, capsys):
    static.main(TOY + ["--learners", "gated", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("worst_segment_gap_points", "segments_below_1pt", "online_miou", "frozen_miou", "segments",
                "learners", "settings"):
        assert key in last, key
    gated = last["learners"]["gated"]
    kinds = [row["kind"] for row in gated["segments"]]
    assert "stop" in kinds and "drive" in kinds
    assert sum(row["end"] - row["start"] for row in gated["segments"]) == 30
    assert last["worst_segment_gap_points"] == min(row["gap_points"] for row in gated["segments"])
    assert 0.0 < last["frozen_miou"] <= 1.0 and 0.0 < last["online_miou"] <= 1.0
    assert (tmp_path / "static.png").is_file() and (tmp_path / "static.json").is_file()
    assert (tmp_path / "segments-gated-100981.json").is_file()


def test_segments_cut_stops_domains_and_long_drives():
    cuts = static.segments([False] * 4 + [True] * 6 + [False] * 10, ["a"] * 15 + ["b"] * 5, length=5)
    assert cuts == [(0, 4, "drive"), (4, 10, "stop"), (10, 15, "drive"), (15, 20, "drive")]
    with pytest.raises(ValueError, match="stop flags"):
        static.segments([False], ["a", "b"], 5)


def test_bad_learners_are_refused():
    with pytest.raises(SystemExit):
        static.parse_args(["--learners", "magic"])
