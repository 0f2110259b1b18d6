import os
import subprocess
from pathlib import Path


def run(*args):
    return subprocess.run(["python", "/app/wordstat.py", *args], capture_output=True, text=True, check=True).stdout


def test_executable():
    assert os.access("/app/wordstat.py", os.X_OK)


def test_counts(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a b\nc\n")
    assert run(str(f)).strip() == "lines=2 words=3 chars=6"


def test_top(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("b a B c a b\n")
    assert run("--top", "2", str(f)).splitlines() == ["b 3", "a 2"]


def test_saved_output():
    assert Path("/app/top2.txt").read_text().splitlines() == ["the 4", "and 1"]
