"""Scan sources: a folder, a list of files, a .zip, a .tar.gz; unsafe archives are refused."""

from __future__ import annotations

import tarfile
import zipfile

import pytest

from zeroclick.imaging.dicom import scan
from zeroclick.imaging.errors import InvalidInputError


def _labels(exam) -> dict[int, str]:
    return {s.number: s.label for s in exam.series}


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "list"])
def test_archives_and_lists_give_the_same_exam(small_exam, tmp_path, kind):
    folder, expected = small_exam
    files = sorted(p for p in folder.rglob("*.dcm"))
    if kind == "zip":
        source = tmp_path / "exam.zip"
        with zipfile.ZipFile(source, "w") as zf:
            for p in files:
                zf.write(p, p.relative_to(folder))
    elif kind == "tar.gz":
        source = tmp_path / "exam.tar.gz"
        with tarfile.open(source, "w:gz") as tf:
            tf.add(folder, arcname="exam")
    else:
        source = [str(p) for p in files]
    exam = scan(source)
    assert _labels(exam) == expected
    vol = exam.find("cine_sax")[0].volume()  # the extracted files stay readable while the exam lives
    assert vol.array.shape == (10, 6, 16, 16)


def test_zip_with_path_traversal_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../outside.dcm", b"x")
    with pytest.raises(InvalidInputError, match="outside the archive"):
        scan(bad)


def test_missing_source_says_what_to_give(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        scan(tmp_path / "nope")


def test_cli_scan_table_and_json(small_exam, run_cli):
    import json

    folder, expected = small_exam
    code, out, _ = run_cli("scan", str(folder))
    assert code == 0
    assert "cine_lax_4ch" in out and "13 series" in out
    code, out, _ = run_cli("scan", str(folder), "--json")
    assert code == 0
    record = json.loads(out)
    labels = {s["number"]: s["label"] for s in record["studies"][0]["series"]}
    assert labels == expected
    assert all(s["reasons"] for s in record["studies"][0]["series"])


def test_cli_scan_without_images_exits_3(tmp_path, run_cli):
    (tmp_path / "readme.txt").write_text("no images here")
    code, out, err = run_cli("scan", str(tmp_path))
    assert code == 3
    assert "not_dicom" in out and "no image series" in err
