"""The sizing table, the budget rule and ``odistill size``."""
from __future__ import annotations

import json

import pytest

from perception import sizing
from perception.sizing import NoStudentFits, SizingError, SizingRow, choose_student, load_table, save_table
from stream.cli import main


def _rows() -> list[SizingRow]:
    return [
        SizingRow("tiny", {"256x128": 3.0, "480x352": 12.0}, {"256x128": 6e6}, 0.50, 0.45, params=10),
        SizingRow("fast", {"256x128": 4.0, "480x352": 15.0}, {"256x128": 9e6}, 0.58, 0.52, params=20),
        SizingRow("default", {"256x128": 6.0, "480x352": 25.0}, {"256x128": 12e6}, 0.60, 0.55, params=30),
        SizingRow("deep", {"256x128": 6.0, "480x352": 30.0}, {"256x128": 13e6}, 0.62, 0.55, params=40),
    ]


def test_the_most_accurate_student_inside_the_budget_is_chosen():
    rows = _rows()
    assert choose_student(rows, 3.5).net == "tiny"
    assert choose_student(rows, 5.0).net == "fast"
    # default and deep tie on online mIoU at the same ms: ranked by online mIoU, then the faster; both 6 ms -> first max
    assert choose_student(rows, 100.0).net in {"default", "deep"}
    assert choose_student(rows, 20.0, size="480x352").net == "fast"
    with pytest.raises(NoStudentFits, match="the fastest, tiny, takes 12.00 ms"):
        choose_student(rows, 5.0, size="480x352")
    with pytest.raises(SizingError, match="no row of the sizing table is timed at 640x480"):
        choose_student(rows, 5.0, size="640x480")


def test_online_miou_ranks_before_the_ceiling():
    rows = [SizingRow("a", {"256x128": 1.0}, {}, 0.9, 0.4), SizingRow("b", {"256x128": 1.0}, {}, 0.5, 0.45)]
    assert choose_student(rows, 2.0).net == "b"
    rows = [SizingRow("a", {"256x128": 1.0}, {}, 0.9, None), SizingRow("b", {"256x128": 1.0}, {}, 0.5, None)]
    assert choose_student(rows, 2.0).net == "a"  # no online figure: the ceiling decides


@pytest.mark.parametrize("text", ["256", "x128", "256x", "axb", "16x128", "256x-1"])
def test_bad_sizes_are_refused_by_name(text):
    with pytest.raises(SizingError, match=f"size {text!r}"):
        sizing.parse_size(text)


def test_a_table_round_trips_and_bad_tables_are_named(tmp_path):
    path = save_table(_rows(), tmp_path / "t.json", {"bench": "test", "world": 1})
    rows, provenance = load_table(path)
    assert rows == _rows() and provenance == {"bench": "test", "world": 1}
    with pytest.raises(SizingError, match="sizing table not found"):
        load_table(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SizingError, match="bad.json: not a sizing table"):
        load_table(tmp_path / "bad.json")
    data = json.loads(path.read_text())
    data["rows"][0]["net"] = "huge"
    (tmp_path / "huge.json").write_text(json.dumps(data))
    with pytest.raises(SizingError, match="unknown student net 'huge'"):
        load_table(tmp_path / "huge.json")


def test_latency_is_measured_and_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    assert sizing.measure_latency_ms("tiny", "64x32", threads=1, repeats=3, warmup=1) > 0
    assert torch.get_num_threads() == before
    assert sizing.macs("default", "256x128") > sizing.macs("tiny", "256x128")


def test_odistill_size_names_a_student_or_says_none_fits(tmp_path, capsys):
    table = save_table(_rows(), tmp_path / "t.json", {"bench": "test", "world": 1})
    assert main(["size", "--budget-ms", "4.5", "--table", str(table), "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "student.net=fast" in out and "tiny" in out and "deep" in out
    assert main(["size", "--budget-ms", "1", "--table", str(table), "--no-measure"]) == 1
    assert "no student runs within 1 ms" in capsys.readouterr().err
    assert main(["size", "--budget-ms", "1", "--size", "12x9", "--table", str(table)]) == 2
    assert "size '12x9'" in capsys.readouterr().err
    assert main(["size", "--budget-ms", "5", "--table", str(tmp_path / "none.json")]) == 2
    assert main(["size", "--budget-ms", "10000", "--size", "64x32", "--table", str(table), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["size"] == "64x32" and all(row["ms"]["64x32"] > 0 for row in data["rows"])  # timed here


def test_the_shipped_table_names_nets_that_have_starting_students():
    from stream.builders import shipped_student_weights

    if not sizing.SIZING_TABLE.is_file():
        pytest.skip("no sizing table shipped yet (bench/ceiling.py --ship)")
    rows, provenance = load_table()
    assert provenance["bench"] == "bench/ceiling.py" and len(rows) >= 3
    for row in rows:
        assert shipped_student_weights(row.net).is_file(), row.net
        assert set(row.ms) == set(sizing.SIZES) and row.ceiling_miou and row.online_miou
