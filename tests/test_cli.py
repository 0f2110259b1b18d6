"""The command line: every command is listed, each has its own options, and bad data is one clean line."""

from __future__ import annotations

import pytest

from pivot_algo import cli
from pivot_algo.pipeline import COMMANDS


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in (*COMMANDS, "table", "sandbox"):
        assert f"    {command} " in out, command
    assert set(cli.STAGE_HELP) == set(COMMANDS)  # a new stage gets its help line


def test_an_unknown_command_names_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["prfile", "--config", "tiny"])
    assert e.value.code == 2 and "choose from" in capsys.readouterr().err


def test_bad_trajectory_data_is_one_line_naming_file_line_and_field(tmp_path, capsys):
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"domain": "terminal", "task": {}, "tools": [], "messages": []}\n')
    rc = cli.main(["profile", "--config", "tiny", f"env.trajectories={bad}", f"output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(bad) in err and "line 1" in err and "'id'" in err and "Traceback" not in err
