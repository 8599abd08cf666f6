"""Units come from folders, globs and CSV files with stable, unique, folder-safe ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from cohort_fakes import FAKE, make_cohort

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cohort import discover_units
from zeroclick.pipelines.cohort.builtin import CMR, SLIDE


def test_folder_children_are_units_hidden_and_foreign_skipped(tmp_path):
    make_cohort(tmp_path / "c", 3)
    (tmp_path / "c" / ".hidden.txt").write_text("x")
    (tmp_path / "c" / "notes.md").write_text("x")
    units = discover_units([tmp_path / "c"], FAKE)
    assert [u.id for u in units] == ["study-00.txt", "study-01.txt", "study-02.txt"]
    assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in units)


def test_glob_with_same_names_in_two_sites_gets_distinct_ids(tmp_path):
    for site in ("site-a", "site-b"):
        make_cohort(tmp_path / site, 2)
    units = discover_units([str(tmp_path / "site-*" / "*.txt")], FAKE)
    assert [u.id for u in units] == [
        "site-a--study-00.txt", "site-a--study-01.txt", "site-b--study-00.txt", "site-b--study-01.txt"]


def test_csv_with_relative_paths_and_ids(tmp_path):
    make_cohort(tmp_path / "data", 2)
    csv = tmp_path / "cohort.csv"
    csv.write_text("id,path\npatient one,data/study-00.txt\n,data/study-01.txt\n")
    units = discover_units([csv], FAKE)
    assert [(u.id, Path(u.path).name) for u in units] == [("patient_one", "study-00.txt"),
                                                          ("study-01.txt", "study-01.txt")]


def test_same_input_named_twice_is_one_unit(tmp_path):
    make_cohort(tmp_path / "c", 2)
    units = discover_units([tmp_path / "c", str(tmp_path / "c" / "*.txt")], FAKE)
    assert len(units) == 2


def test_duplicate_csv_ids_are_a_named_error(tmp_path):
    make_cohort(tmp_path, 2)
    csv = tmp_path / "cohort.csv"
    csv.write_text("id,path\nx,study-00.txt\nx,study-01.txt\n")
    with pytest.raises(InvalidInputError, match="distinct 'id'"):
        discover_units([csv], FAKE)


def test_csv_without_path_column_and_missing_input_are_named_errors(tmp_path):
    csv = tmp_path / "cohort.csv"
    csv.write_text("file\nx\n")
    with pytest.raises(InvalidInputError, match="'path' column"):
        discover_units([csv], FAKE)
    with pytest.raises(InvalidInputError, match="not a folder, a glob, a CSV"):
        discover_units([tmp_path / "nowhere"], FAKE)


def test_builtin_kinds_recognise_exams_and_slides(tmp_path):
    (tmp_path / "exam1").mkdir()
    for name in ("exam2.zip", "exam3.tar.gz", "a.svs", "b.ndpi", "c.tiff", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [u.id for u in discover_units([tmp_path], CMR)] == ["exam1", "exam2.zip", "exam3.tar.gz"]
    assert [u.id for u in discover_units([str(tmp_path / "*.*")], SLIDE)] == ["a.svs", "b.ndpi", "c.tiff"]
