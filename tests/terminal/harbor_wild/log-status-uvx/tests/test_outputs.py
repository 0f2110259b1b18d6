from pathlib import Path


def test_report():
    assert Path("/app/report.txt").read_text().split("\n") == ["200 3", "403 1", "404 2", "500 1", ""]


def test_bytes():
    assert Path("/app/bytes.txt").read_text().strip() == "1392"
