"""Harbor / Terminal-Bench adapter: parsing (with malformed input), the solve.sh splitter, the
test-script wrapper's reward-file rule, and end-to-end conversion of the shipped example tasks."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from pivot_envs.domains.terminal import harbor
from pivot_envs.domains.terminal.harbor import HarborTaskError, split_solution
from pivot_envs.trajectory import validate_record

TASKS = sorted(p.name for p in harbor.BUILTIN_TASKS_DIR.iterdir() if p.is_dir())


# ----------------------------------------------------------------------------- splitter


def test_splitter_keeps_multiline_constructs_whole():
    script = textwrap.dedent("""\
        #!/bin/bash
        # a comment

        cat > a.py <<'EOF'
        if x:
            done = "fi )"
        EOF
        for f in *.txt; do
          echo "$(basename "$f")"
        done
        if [ -f a ]; then echo y
        else echo n; fi
        echo a \\
          b
        ls | grep x &&
          echo ok
        case "$x" in
          a) echo A ;;
          *) echo other ;;
        esac
        { echo 1; echo 2; } > out.txt
        echo "unbalanced ) and # inside quotes" # trailing ( comment
        cat <<-EOT
        \tindented
        \tEOT
        echo last
        """)
    steps = split_solution(script).steps
    assert [s.split()[0] for s in steps] == ["cat", "for", "if", "echo", "ls", "case", "{", "echo", "cat", "echo"]
    assert steps[0].endswith("EOF") and 'done = "fi )"' in steps[0]
    assert steps[2].endswith("fi") and steps[3] == "echo a \\\n  b" and steps[4].endswith("echo ok")
    assert steps[-1] == "echo last"


def test_splitter_set_e_and_context_carry():
    script = textwrap.dedent("""\
        set -euo pipefail
        cd /app/repo
        export MODE=fast
        helper() {
          echo "help $1"
        }
        fix=$(git log --format=%H | head -n 1)
        git show "$fix"
        helper me
        cd /app && ls
        """)
    parsed = split_solution(script)
    assert parsed.stop_on_error
    # -e becomes stop_on_error; -u and pipefail still apply to every step; a variable reaches only its readers
    prefix = 'set -uo pipefail\ncd /app/repo\nexport MODE=fast\n'
    assert parsed.steps[0] == prefix + 'fix=$(git log --format=%H | head -n 1)\ngit show "$fix"'
    assert parsed.steps[1].startswith(prefix + "helper() {") and parsed.steps[1].endswith("helper me")
    assert parsed.steps[2] == prefix + "cd /app && ls"  # a cd with a command after it is a real step
    assert not split_solution("echo a\nset -x\necho b\n").stop_on_error
    assert split_solution("set -o errexit\necho hi\n").stop_on_error
    # functions reach only the steps that call them, transitively
    assert split_solution("a() {\n  echo a\n}\nb() { a; }\nc() { echo c; }\nb\necho x\n").steps == [
        "a() {\n  echo a\n}\nb() { a; }\nb", "echo x"]


@pytest.mark.parametrize("bad", ["if true; then\n  echo x\n", "echo 'unclosed\n", "cat <<EOF\nno end\n", "echo a \\\n"])
def test_splitter_rejects_unfinished_scripts(bad):
    with pytest.raises(HarborTaskError, match="unfinished|never closed"):
        split_solution(bad)


# ----------------------------------------------------------------------------- parsing


def test_toml_and_yaml_errors_are_clear():
    with pytest.raises(HarborTaskError, match=r"task.toml: invalid TOML.*line 2"):
        harbor.parse_task_toml("[verifier]\ntimeout_sec = = 3\n")
    with pytest.raises(HarborTaskError, match=r"\[agent\] must be a table"):
        harbor.parse_task_toml('agent = "fast"\n')
    with pytest.raises(HarborTaskError, match=r"invalid YAML at line 3, column \d+"):
        harbor.parse_task_yaml("instruction: |\nbad: [unclosed\n  - x: y: z\n")
    with pytest.raises(HarborTaskError, match="'instruction' is missing"):
        harbor.parse_task_yaml("difficulty: easy\n")
    with pytest.raises(HarborTaskError, match="expected a mapping"):
        harbor.parse_task_yaml("- just\n- a list\n")
    assert harbor.parse_memory_mb("2G") == 2048 and harbor.parse_memory_mb("512M") == 512
    assert harbor.parse_memory_mb("1.5GiB") == 1536 and harbor.parse_memory_mb(4096) == 4096
    for bad in ("lots", "2X", True, "1K"):
        with pytest.raises(HarborTaskError, match="memory"):
            harbor.parse_memory_mb(bad)


def _copy_task(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(harbor.BUILTIN_TASKS_DIR / name, dst)
    return dst


def test_load_task_reports_missing_and_malformed_files(tmp_path):
    task = _copy_task(tmp_path, "log-level-summary")
    (task / "task.toml").write_text('[agent]\ntimeout_sec = "soon"\n')
    with pytest.raises(HarborTaskError, match=r"\[agent\] timeout_sec must be a positive number"):
        harbor.load_task(task)
    (task / "task.toml").write_text("[environment]\nmemory = '2G'\ncpus = 2\n")
    assert harbor.load_task(task).limits.memory_mb == 2048 and harbor.load_task(task).limits.cpus == 2
    (task / "tests" / "test.sh").unlink()
    with pytest.raises(HarborTaskError, match="missing tests/test.sh"):
        harbor.load_task(task)
    (task / "solution" / "helper.py").write_text("x = 1\n")
    with pytest.raises(HarborTaskError, match="not a directory|neither task.toml"):
        harbor.load_task(tmp_path / "nope")
    tb = _copy_task(tmp_path, "csv-sales-report")
    (tb / "task.yaml").write_text("instruction: [oops\n")
    with pytest.raises(HarborTaskError, match="task.yaml: invalid YAML"):
        harbor.load_task(tb)


def test_shipped_tasks_cover_both_layouts_and_five_categories():
    loaded = [harbor.load_task(harbor.BUILTIN_TASKS_DIR / n) for n in TASKS]
    assert len(loaded) >= 5
    assert {t.layout for t in loaded} == {"harbor", "terminal-bench"}
    cats = {str(t.metadata.get("category")) for t in loaded}
    assert len(cats) >= 5, cats
    for t in loaded:
        assert t.solution and split_solution(t.solution).steps
        dockerfile = (t.dockerfile_dir / "Dockerfile").read_text()
        assert any(base in dockerfile for base in ("ubuntu:", "python:", "debian:")), t.name  # exercises the fallback
        d = harbor.to_task_dict(t, "img")
        assert d["setup"] == "" and d["image"] == "img" and "PIVOT_TESTS_B64" in d["test"]


# ----------------------------------------------------------------------------- docker


def _reward_task(tmp_path: Path, body: str) -> harbor.HarborTask:
    root = tmp_path / "reward-task"
    (root / "environment").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "environment" / "Dockerfile").write_text("FROM pivotrl/sandbox-base:latest\nWORKDIR /app\n")
    (root / "instruction.md").write_text("nothing\n")
    (root / "task.toml").write_text("[verifier]\ntimeout_sec = 30\n")
    (root / "tests" / "test.sh").write_text(body)
    return harbor.load_task(root)


@pytest.mark.docker
@pytest.mark.parametrize("body, passes", [
    ("echo 1 > /logs/verifier/reward.txt; exit 1\n", True),    # the reward file wins over the exit code
    ("echo 0 > /logs/verifier/reward.txt; exit 0\n", False),
    ("echo 0.5 > /logs/verifier/reward.txt\n", False),
    ("test \"$PWD\" = /app && test -f /tests/test.sh\n", True),  # no reward file: exit status decides
    ("exit 3\n", False),
    # Harbor's reward.json: the "reward" key (or the only number); the exit status does not count then
    ("echo '{\"reward\": 1.0, \"tests\": 4}' > /logs/verifier/reward.json; exit 1\n", True),
    ("echo '{\"reward\": 0}' > /logs/verifier/reward.json\n", False),
    ("echo '{\"score\": 1}' > /logs/verifier/reward.json\n", True),
    ("echo '{\"a\": 1, \"b\": 1}' > /logs/verifier/reward.json\n", False),  # no "reward": which one?
    ("echo 'not json' > /logs/verifier/reward.json\n", False),
    ("echo 0 > /logs/verifier/reward.txt; echo '{\"reward\": 1}' > /logs/verifier/reward.json\n", False),  # txt first
    ("echo yes > /logs/verifier/reward.txt\n", False),
])
def test_reward_file_rule(docker_backend, tmp_path, body, passes):
    script = harbor.test_script(_reward_task(tmp_path, body))
    with docker_backend.create(None) as sb:
        sb.exec("mkdir -p /logs/verifier && echo 1 > /logs/verifier/reward.txt", timeout=30)  # planted by an agent
        res = sb.exec(script, timeout=30)
        assert res.ok is passes, res.stdout + res.stderr
        assert harbor.REWARD_LINE_PREFIX in res.stdout


@pytest.mark.docker
@pytest.mark.parametrize("name", TASKS)
def test_convert_shipped_task(docker_backend, name):
    converted = harbor.convert_task(harbor.BUILTIN_TASKS_DIR / name, docker_backend)
    assert converted.initial_passed is False, "the tests must fail before the solution ran"
    traj = validate_record(json.loads(json.dumps(converted.trajectory)))
    assert traj.task["image"].startswith("pivotrl/task-") and traj.task["recorded_with"]["backend"] == "docker"
    steps = split_solution(harbor.load_task(harbor.BUILTIN_TASKS_DIR / name).solution).steps
    assert traj.num_turns == len(steps) + 1 and len(converted.step_exit_codes) == len(steps)
    # The converted task is self-contained: a fresh sandbox of its image, the recorded commands, its test.
    with docker_backend.create(traj.task["image"], workdir=traj.task["workdir"]) as sb:
        assert not sb.exec(traj.task["test"], timeout=60).ok
        for k in range(traj.num_turns - 1):
            cmd = json.loads(traj.reference(k)["tool_calls"][0]["function"]["arguments"])["command"]
            sb.exec(cmd, timeout=60)
        assert sb.exec(traj.task["test"], timeout=60).ok


# ----------------------------------------------------------------------------- splitter corpus
#
# Shapes seen in public solve.sh files. Each script runs twice on the host: whole, as solve.sh does,
# and cut into steps, each step in a fresh `bash -c` (as an agent's command runs). The resulting
# file trees must be identical: the state a step sets (variables, arrays, functions, cwd, options)
# reaches the later steps that use it.

CORPUS = {
    "here_strings": r'''
        line="alice 42 admin"
        read -r name age role <<< "$line"
        IFS=, read -ra parts <<< "x,y,z"
        tr a-z A-Z <<< "$name" > upper.txt
        echo "$name/$age/$role/${parts[2]}/${#parts[@]}" > out.txt
        ''',
    "multiline_arrays": r'''
        periods=(
          "2024-01"
          "2024-02"   # a comment inside
          "2024-03"
        )
        extra=( a
                b )
        periods+=("2024-04")
        for p in "${periods[@]}"; do
          mkdir -p "reports/$p" && touch "reports/$p/.keep"
        done
        echo "${#periods[@]} ${extra[1]}" > count.txt
        ''',
    "functions_and_if": r'''
        log() { echo "[$1] $2" >> run.log; }
        greet() {
          log info "hello $1"
        }
        function shout {
          log warn "$(echo "$1" | tr a-z A-Z)"
        }
        if [ ! -f run.log ]; then
          greet world
        else
          shout again
        fi
        shout done
        ''',
    "for_case": r'''
        mkdir -p in && for f in a.jpg b.txt c.bin; do echo "$f" > "in/$f"; done
        for f in in/*; do
          case "$f" in
            *.jpg) kind=image ;;
            *.txt) kind=text ;;
            *) kind=other ;;
          esac
          mkdir -p "$kind" && mv "$f" "$kind/"
        done
        ''',
    "continuations_and_chains": r'''
        mkdir -p build/sub && \
          cd build && \
          echo one > first.txt
        echo two > second.txt
        cd sub && echo three > third.txt
        echo four > fourth.txt &&
          echo five >> fourth.txt ||
          echo never > never.txt
        printf '%s\n' c b a |
          sort > sorted.txt
        ''',
    "set_e_export_cd": r'''
        #!/bin/bash
        set -euo pipefail
        export GREETING="hello there"
        mkdir -p work
        cd work
        bash -c 'echo "$GREETING"' > env.txt
        COUNT=3
        for i in $(seq 1 "$COUNT"); do echo "$i" >> seq.txt; done
        ''',
    "heredocs": r'''
        cat > a.py <<'EOF'
        print("single $HOME `quoted`")
        EOF
        cat > b.txt <<"END"
        double $NOT_EXPANDED
        END
        name=world
        cat > c.txt <<EOF
        hello $name $(echo sub)
        EOF
        cat <<\STOP > d.txt
        backslash $x
        STOP
        python3 a.py > a.out
        ''',
    "mapfile_assoc_pure_loop": r'''
        printf '%s\n' "b 2" "a 5" "b 4" > data.txt
        declare -A total=()
        mapfile -t rows < <(sort data.txt)
        for row in "${rows[@]}"; do
          read -r k v <<< "$row"
          total[$k]=$(( ${total[$k]:-0} + v ))
        done
        sum=0
        while read -r _ v; do sum=$(( sum + v )); done < data.txt
        for k in $(printf '%s\n' "${!total[@]}" | sort); do echo "$k ${total[$k]}"; done > totals.txt
        echo "$sum" > sum.txt
        ''',
    "subshells_and_groups": r'''
        mkdir -p pkg
        (cd pkg && echo inside > in.txt)
        echo outside > out.txt
        { echo 1; echo 2; } > group.txt
        out=$( (echo nested) )
        echo "$out" > nested.txt
        ''',
    "pushd_source_exit": r'''
        mkdir -p deep/er
        pushd deep >/dev/null
        echo 'export MODE=prod' > env.sh
        source env.sh
        echo "$MODE" > mode.txt
        popd >/dev/null
        echo "# paren ( in a comment" > comment.txt  # and ) here
        exit 0
        echo unreachable > never.txt
        ''',
}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_bash(script: str, cwd: Path) -> None:
    import subprocess

    subprocess.run(["bash", "-c", script], cwd=cwd, check=False, capture_output=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_splitter_corpus_steps_reproduce_the_whole_script(tmp_path, name):
    script = textwrap.dedent(CORPUS[name]).lstrip("\n")
    whole, stepped = tmp_path / "whole", tmp_path / "stepped"
    whole.mkdir()
    stepped.mkdir()
    _run_bash(script, whole)
    parsed = split_solution(script)
    assert len(parsed.steps) >= 2, parsed.steps
    for step in parsed.steps:
        _run_bash(step, stepped)
    expected = _tree(whole)
    assert expected, "the script did nothing"
    assert _tree(stepped) == expected


def test_splitter_here_string_is_not_a_heredoc_and_arrays_are_state():
    parsed = split_solution(textwrap.dedent(CORPUS["here_strings"]).lstrip("\n"))
    assert len(parsed.steps) == 2  # the two commands with effects; assignments and reads are carried
    assert 'read -r name age role <<< "$line"' in parsed.steps[0]
    arrays = split_solution(textwrap.dedent(CORPUS["multiline_arrays"]).lstrip("\n")).steps
    assert len(arrays) == 2 and all(s.startswith("periods=(") for s in arrays)
    assert 'periods+=("2024-04")' in arrays[0] and "extra=( a" not in arrays[0]  # only what the step reads


def test_splitter_exit_ends_the_script_and_set_flags_are_kept_without_e():
    parsed = split_solution("set -ex\necho a > f\nexit\necho b\n")
    assert parsed.stop_on_error and parsed.steps == ["echo a > f"]
    assert split_solution("set -o pipefail\nls | wc -l\n").steps == ["set -o pipefail\nls | wc -l"]


# ----------------------------------------------------------------------------- offline test dependencies

from pivot_envs.domains.terminal.harbor import (
    TestsNeedNetworkError,
    plan_test_dependencies,
)


def _plan(text: str, **extra: bytes):
    return plan_test_dependencies({"test.sh": text.encode(), **extra}, ["test.sh"])


def test_offline_plan_maps_runners_onto_the_registries():
    plan = _plan(textwrap.dedent("""\
        #!/bin/bash
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl git
        curl -LsSf https://astral.sh/uv/0.9.7/install.sh | sh
        source $HOME/.local/bin/env
        uvx -p 3.13 -w pytest==8.4.1 --with pytest-json-ctrf==0.3.5 pytest --ctrf /logs/verifier/ctrf.json /tests -rA
        pip install -q pytest-timeout "requests>=2"
        python3 -m pip install -r /tests/requirements.txt
        curl -s http://localhost:8080/health
        """), **{"requirements.txt": b"numpy==2.1.0  # pinned\n\n-e .\n"})
    assert plan.apt_packages == ("curl", "git") and plan.uv_version == "0.9.7"
    assert sorted(plan.python_requirements) == sorted(("pytest==8.4.1", "pytest-json-ctrf==0.3.5", "pytest",
                                                       "pytest-timeout", "requests>=2", "numpy==2.1.0"))
    assert plan.preinstalled == ("pytest-timeout", "requests>=2", "numpy==2.1.0")  # plain pip: also into the image
    new = plan.rewritten["test.sh"].splitlines()
    assert new[1] == "true && true" and new[2] == "true" and new[3] == "source $HOME/.local/bin/env"
    assert new[4].startswith("uvx -w pytest==8.4.1") and "-p 3.13" not in new[4]
    assert new[5:] == ["pip install -q pytest-timeout \"requests>=2\"", "python3 -m pip install -r /tests/requirements.txt",
                       "curl -s http://localhost:8080/health"]  # pip runs as written, from the wheelhouse
    build = "\n".join(plan.dockerfile_lines())
    assert "apt-get install -y --no-install-recommends curl git" in build and "pip install --no-cache-dir uv==0.9.7" in build
    assert "pip download --no-cache-dir -q -d /opt/pivotrl/wheels " in build and "pytest-json-ctrf==0.3.5" in build
    assert len(plan.notes) == 4  # apt update, apt install, the uv installer, the dropped -p: each said


def test_offline_plan_terminal_bench_uv_venv_shape():
    plan = _plan("uv venv .tbench-testing\nsource .tbench-testing/bin/activate\nuv pip install pytest==8.4.1\n"
                 "uv run pytest $TEST_DIR/test_outputs.py -rA\n")
    assert plan.python_requirements == ("pytest==8.4.1",) and plan.uv_version == ""
    assert "pytest" not in [r.split("=")[0] for r in plan.python_requirements[1:]]  # `uv run pytest`: a command
    assert _plan("python3 /tests/check.py\n").empty


@pytest.mark.parametrize("line, what", [
    ("wget -q https://example.org/expected.csv -O /tmp/e.csv", "wget -q https://example.org"),
    ("git clone https://github.com/x/y.git /tmp/y", "git clone https://github.com/x/y.git"),
    ("pip install git+https://github.com/x/y.git", "git+https://github.com/x/y.git"),
    ("npm install -g jest", "npm install -g jest"),
    ("x=$(curl -fsSL https://api.example.com/v1)", "curl -fsSL https://api.example.com/v1"),
])
def test_tests_that_still_need_the_network_are_refused_naming_the_command(line, what):
    with pytest.raises(TestsNeedNetworkError, match=re.escape(what)):
        _plan(f"#!/bin/bash\n{line}\n")


def test_python_shim_and_appended_lines_in_the_task_dockerfile():
    from pivot_envs.images.build import (
        PYTHON_SHIM,
        add_python_shim,
        append_lines,
        rewrite_missing_from,
    )

    text, replaced = rewrite_missing_from("FROM python:3.12-slim\nUSER app\nRUN echo hi\n", "base:1",
                                          is_available=lambda image: False)
    out = append_lines(add_python_shim(text, "base:1"), ["RUN apt-get install -y curl"]).splitlines()
    assert replaced == ["python:3.12-slim"] and out[:2] == ["FROM base:1", PYTHON_SHIM]
    assert out[-3:] == ["USER root", "RUN apt-get install -y curl", "USER app"]  # installs as root, user restored


# ----------------------------------------------------------------------------- one recorder


@pytest.mark.docker
def test_one_recorder_records_the_builtin_suite_byte_identically(docker_backend):
    """The built-in suite and Harbor tasks share `record_commands`; the suite's JSONL is unchanged."""
    from pivot_envs.domains.terminal.tasks import (
        load_recorded,
        record_trajectory,
        suite,
    )

    shipped = {r["id"]: r for r in load_recorded("val")}
    for task in suite("val", 3, 0):
        fresh = record_trajectory(task, docker_backend)
        assert json.dumps(fresh, ensure_ascii=False) == json.dumps(shipped[task.id], ensure_ascii=False), task.id


# ----------------------------------------------------------------------------- tasks from the wild

WILD_DIR = Path(__file__).resolve().parent / "harbor_wild"
# folder -> (outcome, refusal kind). Written in the shapes of public Harbor / Terminal-Bench tasks.
WILD_EXPECTED = {
    "compare-remote-checksum": ("refused", "needs_network"),     # test.sh curls another host
    "count-todo-no-solution": ("episode_only", ""),              # Harbor, no solution/
    "csv-monthly-etl": ("converted", ""),                        # TB: apt curl, astral uv, uv venv + uv pip; arrays
    "fetch-release-internet": ("refused", "declares_internet"),  # allow_internet = true
    "hello-file-trivial": ("refused", "passes_initially"),       # reward.json 1 on the untouched state
    "json-to-env-no-solution": ("episode_only", ""),             # TB, no solution.sh; pip install pytest
    "log-status-uvx": ("converted", ""),                         # apt curl, astral uv, uvx -p 3.13; here-strings
    "markdown-table-pip-solution": ("converted", ""),            # the solution itself runs pip install
    "nginx-config-partial": ("converted", ""),                   # fractional reward.txt; continuations
    "organize-downloads-json": ("converted", ""),                # reward.json, test always exits 0; for/case
    "py-package-build": ("converted", ""),                       # TB: cd chains, `python`, continuations
    "python-cli-pip": ("converted", ""),                         # pip install pytest; heredoc in a function
    "rotate-backups-arrays": ("converted", ""),                  # set -euo pipefail, mapfile, arrays, functions
    "split-user-records": ("converted", ""),                     # TB: here-strings in loops
}
BEFORE_BUILD = ("compare-remote-checksum", "fetch-release-internet")  # refused without building anything


def test_wild_folders_load_and_cover_both_layouts():
    folders = harbor.find_task_folders(WILD_DIR)
    assert sorted(p.name for p in folders) == sorted(WILD_EXPECTED) and len(folders) >= 10
    tasks = [harbor.load_task(p) for p in folders]
    assert {t.layout for t in tasks} == {"harbor", "terminal-bench"}
    assert sum(t.solution is None for t in tasks) == 2 and sum(bool(t.allow_internet) for t in tasks) == 1


@pytest.mark.docker
def test_folder_cli_summary_and_resume(docker_backend, tmp_path):
    """The one-command conversion: summary table with refusal reasons; a second run redoes nothing."""
    import subprocess
    import sys

    src = tmp_path / "dataset"
    for name in BEFORE_BUILD:
        shutil.copytree(WILD_DIR / name, src / "nested" / name)
    out = tmp_path / "out" / "tasks.jsonl"
    cmd = [sys.executable, "-m", "pivot_envs.domains.terminal.harbor", "convert", str(src), "--out", str(out), "-q",
           "--internet-tasks", "refuse"]  # allow_internet refused before any build (the default builds and runs it)
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "| refused | 2 |" in first.stdout and "needs_network: " in first.stdout
    assert "declares_internet: " in first.stdout and "checksums.example.org" in first.stdout
    status = [json.loads(line) for line in (tmp_path / "out" / "tasks.status.jsonl").read_text().splitlines()]
    assert [s["status"] for s in status] == ["refused", "refused"] and out.read_text() == ""
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert second.stdout.count("(resumed)") == 2
    # A half-written line left by a killed run is dropped, the task behind it is redone.
    with (tmp_path / "out" / "tasks.status.jsonl").open("a") as fh:
        fh.write('{"folder": "nested/x", "sta')
    report = harbor.convert_folder(src, docker_backend, out=out)
    assert [o.resumed for o in report.outcomes] == [True, True]
    assert (tmp_path / "out" / "tasks.status.jsonl").read_text().count("\n") == 2


def _episode(env, traj, actions) -> float:
    env.reset(options={"trajectory": traj.id, "turn": 0})
    reward = 0.0
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        assert not info.get("masked"), info
        if terminated or truncated:
            break
    return float(reward)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_wild_tasks_convert_score_and_replay(docker_backend, tmp_path):
    """Each wild task converts or is refused for the right reason; a converted demonstration scores 1
    against itself at every turn, its episode replay earns the task's reward (1), doing nothing earns 0."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.trajectory import load_trajectories

    report = harbor.convert_folder(WILD_DIR, docker_backend, out=tmp_path / "wild.jsonl")
    print("\n" + report.table())
    got = {o.name: (o.status, o.kind) for o in report.outcomes}
    assert got == WILD_EXPECTED, report.table()
    assert all(t["task"].get("episode_only") for t in report.episode_tasks) and len(report.episode_tasks) == 2
    assert not any(t["task"].get("episode_only") for t in report.trajectories)
    trajs = load_trajectories(report.trajectories + report.episode_tasks)
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=docker_backend)
    episode_env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=docker_backend, mode="episode")
    failures = []
    try:
        for traj in trajs:
            nothing = _episode(episode_env, traj, [{"role": "assistant", "content": "Done."}])
            if nothing != 0.0:
                failures.append(f"{traj.id}: doing nothing earned {nothing}")
            if traj.task.get("episode_only"):
                continue
            for k in range(traj.num_turns):
                env.reset(options={"trajectory": traj.id, "turn": k})
                (verdict,) = env.unwrapped.judge_actions([traj.reference(k)])
                if verdict.reward != 1.0:
                    failures.append(f"{traj.id} turn {k}: {'MASKED ' if verdict.masked else ''}{verdict.reason}")
            replay = _episode(episode_env, traj, [traj.reference(k) for k in range(traj.num_turns)])
            if replay != 1.0:
                failures.append(f"{traj.id}: episode replay earned {replay}")
    finally:
        env.close()
        episode_env.close()
    assert not failures, "; ".join(failures)
    # The reward the test printed is Harbor's own: 1 after the solution, 0 (or partial) before it.
    for traj in trajs:
        with docker_backend.create(traj.task["image"], workdir=traj.task["workdir"]) as sb:
            before = sb.exec(traj.task["test"], timeout=120)
            assert f"{harbor.REWARD_LINE_PREFIX}0" in before.stdout, (traj.id, before.stdout[-500:])


@pytest.mark.docker
def test_a_test_that_passes_on_the_initial_state_is_refused(docker_backend):
    """Its reward.json says 1 before anything ran: converting it would hand out free rewards."""
    with pytest.raises(harbor.TaskRefusedError, match="already pass on the initial state") as info:
        harbor.convert_task(WILD_DIR / "hello-file-trivial", docker_backend)
    assert info.value.kind == "passes_initially"


def _prebuilt_image_task(tmp_path: Path, image: object) -> Path:
    root = tmp_path / "prebuilt"
    (root / "tests").mkdir(parents=True)
    (root / "instruction.md").write_text("Create /app/done.\n")
    (root / "task.toml").write_text(f"[environment]\ndocker_image = {json.dumps(image)}\n")
    (root / "tests" / "test.sh").write_text("test -f /app/done\n")
    (root / "solution").mkdir()
    (root / "solution" / "solve.sh").write_text("touch /app/done\n")
    return root


def test_prebuilt_docker_image_without_a_dockerfile_loads(tmp_path):
    task = harbor.load_task(_prebuilt_image_task(tmp_path, "python:3.12-slim"))
    assert task.generated_dockerfile == "FROM python:3.12-slim\nWORKDIR /app\n" and task.workdir == "/app"
    with pytest.raises(HarborTaskError, match="docker_image must be an image name"):
        harbor.load_task(_prebuilt_image_task(tmp_path / "bad", 3))
    (tmp_path / "prebuilt" / "task.toml").write_text("[environment]\ncpus = 1\n")
    with pytest.raises(HarborTaskError, match=r"missing environment/Dockerfile \(or \[environment\] docker_image"):
        harbor.load_task(tmp_path / "prebuilt")


@pytest.mark.docker
def test_prebuilt_docker_image_task_converts(docker_backend, tmp_path):
    converted = harbor.convert_task(_prebuilt_image_task(tmp_path, "python:3.12-slim"), docker_backend)
    assert converted.status == "converted" and converted.initial_passed is False
    assert converted.trajectory["task"]["image"].startswith("pivotrl/task-prebuilt:")


def test_packages_the_solution_installs_come_from_the_wheelhouse():
    plan = _plan("python3 /tests/check.py\n").with_solution("set -e\npip install --quiet tabulate==0.9.0\npython3 x.py\n")
    assert plan.solution_requirements == ("tabulate==0.9.0",) and plan.python_requirements == ("tabulate==0.9.0",)
    assert plan.command_env is not None and plan.command_env["PIP_FIND_LINKS"] == "/opt/pivotrl/wheels"
    assert plan.preinstalled == ()  # downloaded only: the demonstration still installs it
    assert _plan("true\n").with_solution("echo no installs\n").command_env is None
    with pytest.raises(TestsNeedNetworkError, match="git\\+https://example.com/x.git"):
        _plan("true\n").with_solution("pip install git+https://example.com/x.git\n")


def _user_management_task(tmp_path: Path) -> Path:
    """A system-administration task of the kind real task suites hold: its solution needs root's usual
    capabilities (useradd, chpasswd, chown), which a sandbox with every capability dropped refuses."""
    root = _prebuilt_image_task(tmp_path, "debian:bookworm-slim")
    (root / "instruction.md").write_text("Create user alice with password s3cret and give her the folder share.\n")
    (root / "solution" / "solve.sh").write_text(
        "useradd -m alice\necho 'alice:s3cret' | chpasswd\nmkdir -p share\nchown alice:alice share\n")
    (root / "tests" / "test.sh").write_text(
        'id alice && test "$(stat -c %U share)" = alice && grep -q \'^alice:\\$[0-9a-z]\' /etc/shadow\n')
    return root


@pytest.mark.docker
def test_a_user_management_task_converts_and_scores_itself_at_every_turn(docker_backend, local_backend, tmp_path):
    """Converted on docker (the converter builds the task's image), then self-scored at every turn on both
    backends: on local the same record runs on the host's tools (image None), root's work confined to the
    sandbox's user namespace and its own /etc."""
    import copy

    from tests.formats.conftest import self_scores

    converted = harbor.convert_task(_user_management_task(tmp_path), docker_backend)
    assert converted.status == "converted" and converted.initial_passed is False
    assert converted.trajectory["task"]["limits"]["root_caps"] is True
    on_host = copy.deepcopy(converted.trajectory)
    on_host["task"]["image"] = None
    for record, backend in ((converted.trajectory, docker_backend), (on_host, local_backend)):
        scores = self_scores([record], env_id="PivotTerminal-v0", sandbox=backend)
        assert len(scores) == 5 and all(r == 1.0 for _, _, r, _ in scores), (backend.name, scores)
