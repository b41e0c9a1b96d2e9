"""SIGKILL at several points, then a rerun: the same state as one clean run (#6)."""

from __future__ import annotations

import pytest

from tests.builders import SampleShape, index_state, write_archive


@pytest.mark.parametrize(
    "point", ["copy_temp:10", "copy_written:10", "vault_written:3", "sql_committed:3"]
)
def test_kill_then_rerun_equals_a_clean_run(point, cli, reference_cli, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(2, 2, 2, 3))
    common = ["--batch-size", "4", "--workers", "1"]

    cli.env["DICOM_INDEX_FAILPOINT"] = point
    p = cli("ingest", str(archive), "--out", str(tmp_path / "out"), *common, check=-9)
    assert p.returncode == -9  # killed at the failpoint
    del cli.env["DICOM_INDEX_FAILPOINT"]
    cli("ingest", str(archive), "--out", str(tmp_path / "out"), *common)
    got = index_state(cli, tmp_path / "out")

    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *common)
    want = index_state(reference_cli, tmp_path / "ref")

    assert got[0] == want[0]  # same rows in PostgreSQL, vault included, nothing pending
    assert got[1] == want[1]  # same MongoDB documents
    assert got[2] == want[2]  # same copies, byte for byte
    assert got[3] == []  # no partial copy left behind
    assert len(got[2]) == 24
