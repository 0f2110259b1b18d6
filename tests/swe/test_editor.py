"""The str_replace_editor semantics SWE-agent / OpenHands users know, run as the sandbox runs it
(the same script, as a subprocess with python3) on a scratch directory."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from pivot_envs.domains.swe.tools import editor_script


@pytest.fixture
def editor(tmp_path):
    script = tmp_path / "editor.py"
    script.write_text(editor_script())
    env = {"PIVOTRL_EDITOR_HISTORY": str(tmp_path / "history"), "PATH": "/usr/bin:/bin"}

    def run(**args):
        blob = base64.b64encode(json.dumps(args).encode()).decode()
        proc = subprocess.run([sys.executable, str(script), blob], capture_output=True, text=True, env=env, timeout=30, check=False)
        return proc.returncode, proc.stdout
    return run


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n")
    return path


def test_view_numbers_lines_and_honours_ranges(editor, sample):
    rc, out = editor(command="view", path=str(sample))
    assert rc == 0 and "     1\tdef f(x):" in out and "     6\t    return x + 1" in out
    rc, out = editor(command="view", path=str(sample), view_range=[5, 6])
    assert rc == 0 and "     5\tdef g(x):" in out and "def f" not in out
    rc, out = editor(command="view", path=str(sample), view_range=[5, -1])
    assert rc == 0 and "     6\t" in out
    rc, out = editor(command="view", path=str(sample), view_range=[9, 12])
    assert rc == 1 and "Invalid `view_range`" in out


def test_view_of_a_directory_lists_two_levels_without_hidden(editor, tmp_path):
    (tmp_path / "pkg" / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "deep" / "x.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("")
    (tmp_path / ".hidden").mkdir()
    rc, out = editor(command="view", path=str(tmp_path / "pkg"))
    assert rc == 0 and str(tmp_path / "pkg" / "a.py") in out and str(tmp_path / "pkg" / "sub" / "deep") in out
    assert "x.py" not in out and ".hidden" not in out


def test_create_refuses_an_existing_file(editor, sample, tmp_path):
    rc, out = editor(command="create", path=str(sample), file_text="x")
    assert rc == 1 and "File already exists" in out and sample.read_text().startswith("def f")
    rc, out = editor(command="create", path=str(tmp_path / "new" / "n.py"), file_text="hello\n")
    assert rc == 0 and (tmp_path / "new" / "n.py").read_text() == "hello\n"


def test_str_replace_needs_a_unique_old_str(editor, sample):
    before = sample.read_text()
    rc, out = editor(command="str_replace", path=str(sample), old_str="return x + 1", new_str="return x")
    assert rc == 1 and "Multiple occurrences" in out and "[2, 6]" in out and sample.read_text() == before
    rc, out = editor(command="str_replace", path=str(sample), old_str="return y", new_str="z")
    assert rc == 1 and "did not appear verbatim" in out and sample.read_text() == before
    rc, out = editor(command="str_replace", path=str(sample), old_str="def g(x):\n    return x + 1",
                     new_str="def g(x):\n    return x + 2")
    assert rc == 0 and "has been edited" in out and "return x + 2" in sample.read_text()


def test_insert_after_a_line_and_undo_edit(editor, sample):
    before = sample.read_text()
    rc, out = editor(command="insert", path=str(sample), insert_line=2, new_str="# after f")
    assert rc == 0 and sample.read_text().splitlines()[2] == "# after f"
    rc, out = editor(command="insert", path=str(sample), insert_line=0, new_str="# top")
    assert sample.read_text().splitlines()[0] == "# top"
    editor(command="undo_edit", path=str(sample))
    rc, out = editor(command="undo_edit", path=str(sample))
    assert rc == 0 and "undone" in out and sample.read_text() == before
    rc, out = editor(command="undo_edit", path=str(sample))
    assert rc == 1 and "No edit history" in out


def test_bad_arguments_are_the_tools_own_error_messages(editor, sample):
    rc, out = editor(command="view", path="mod.py")
    assert rc == 1 and "not an absolute path" in out
    rc, out = editor(command="delete", path=str(sample))
    assert rc == 1 and "Unrecognized command" in out
    rc, out = editor(command="str_replace", path=str(sample.parent), old_str="a", new_str="b")
    assert rc == 1 and "is a directory" in out


def test_long_output_is_clipped_with_a_marker(editor, tmp_path):
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 5000)
    rc, out = editor(command="view", path=str(big))
    assert rc == 0 and "<response clipped>" in out and len(out) < 20000
