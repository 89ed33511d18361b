"""What a cell leaves when writing goes wrong: an I/O error fails the cell, not the grid; a stale
traceback goes once the cell is ok; temporary files of a killed writer are removed."""

from __future__ import annotations

from bench.run import outputs
from bench.run.cell import RunOptions, run_cell
from bench.run.records import read_record, record_path


def test_an_io_error_while_saving_fails_the_cell_not_the_grid(her2st, tmp_path):
    record, extras = run_cell(her2st, "bicubic", 0, RunOptions(preset="quick"))
    assert record.ok
    blocked = outputs.side_path(tmp_path, record.dataset, "bicubic", 0, ".genes.png")
    blocked.mkdir(parents=True)  # the figure cannot be renamed into place (as a full disk)
    saved, files = outputs.save_or_fail(tmp_path, her2st, record, extras)
    assert saved.status == "failed" and "saving its outputs failed" in saved.error
    assert saved.metrics == {}
    on_disk = read_record(record_path(tmp_path, record.dataset, "bicubic", 0))
    assert on_disk is not None and on_disk.status == "failed"
    assert [p.name for p in files] == ["seed-0.traceback.txt"]


def test_a_stale_traceback_goes_when_the_cell_is_ok(her2st, tmp_path):
    record, extras = run_cell(her2st, "bicubic", 0, RunOptions(preset="quick"))
    stale = outputs.side_path(tmp_path, record.dataset, "bicubic", 0, ".traceback.txt")
    stale.parent.mkdir(parents=True)
    stale.write_text("Traceback (most recent call last): an earlier failure\n")
    files = outputs.save(tmp_path, her2st, record, extras)
    assert not stale.exists() and stale not in files


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    folder = record_path(tmp_path, "d", "m", 1).parent
    folder.mkdir(parents=True)
    left = [folder / ".seed-1.json.x1.tmp.json", folder / ".seed-1.genes.png.x2.tmp.png"]
    kept = [folder / ".seed-10.json.x3.tmp.json", folder / "seed-1.json"]
    for path in left + kept:
        path.write_text("x")
    assert outputs.remove_temporaries(tmp_path, "d", "m", 1) == 2
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
