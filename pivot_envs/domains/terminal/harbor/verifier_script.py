"""The converted task's `test`: one self-contained bash script, and Harbor's reward rule.

The script
1. empties /tests and /logs/verifier (so nothing the agent planted there counts), unpacks the task's
   tests folder into /tests (a base64 tar inside the script: the env needs nothing but `exec`), with
   the install lines rewritten for an offline run (offline.py);
2. runs `test.sh` / `run-tests.sh` from the workdir with `TEST_DIR=/tests` (and, when the tests
   install Python packages, pip/uv pointed at the image's wheelhouse with the index switched off);
3. judges as Harbor does: `/logs/verifier/reward.txt` (one number) when it exists, else
   `/logs/verifier/reward.json` (its "reward" key, or its only numeric value), else, Terminal-Bench
   style, the script's exit status. It prints `[pivotrl] reward R (from ...)` and exits 0 exactly when
   R >= 1. The env's reward is binary, so a partial reward (0 < R < 1) counts as a fail there; the
   printed line keeps the real value.
"""

from __future__ import annotations

import base64
import io
import tarfile

from pivot_envs.domains.terminal.harbor.offline import OFFLINE_ENV, OfflinePlan
from pivot_envs.domains.terminal.harbor.task import HarborTask, HarborTaskError

TESTS_DIR = "/tests"
REWARD_TXT = "/logs/verifier/reward.txt"
REWARD_JSON = "/logs/verifier/reward.json"
MAX_TEST_SCRIPT_BYTES = 100_000  # `bash -c` arguments are capped at 128 KiB by the kernel
REWARD_LINE_PREFIX = "[pivotrl] reward "

# Reads reward.json with python3 when the image has it, else with grep for a top-level "reward" key.
_JUDGE = r"""
judge() {
    if [ -f __TXT__ ]; then
        src=reward.txt
        reward=$(head -c 200 __TXT__ | tr -d ' \t\r\n')
    elif [ -f __JSON__ ]; then
        src=reward.json
        if command -v python3 >/dev/null 2>&1; then
            reward=$(python3 -c '
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"reward.json is not JSON: {e}")
if isinstance(data, dict):
    nums = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    value = data.get("reward", next(iter(nums.values())) if len(nums) == 1 else None)
else:
    value = data
if isinstance(value, bool) or not isinstance(value, (int, float)):
    sys.exit("reward.json has no \"reward\" number")
print(value)' __JSON__) || reward=
        else
            reward=$(grep -o '"reward"[[:space:]]*:[[:space:]]*[-0-9.eE+]*' __JSON__ | head -n 1 | sed 's/.*://' | tr -d ' ')
        fi
    else
        echo "__PREFIX__$( [ "$1" -eq 0 ] && echo 1 || echo 0 ) (from the exit status $1: no reward file)"
        return "$1"
    fi
    if ! awk -v r="$reward" 'BEGIN { exit !(r ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/) }'; then
        echo "__PREFIX__0 (from $src: not a number: '$reward')"
        return 1
    fi
    echo "__PREFIX__$reward (from $src)"
    awk -v r="$reward" 'BEGIN { exit !(r + 0 >= 1) }'
}
"""


def _bundle_b64(files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o755 if rel.endswith(".sh") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return base64.encodebytes(buf.getvalue()).decode()


def test_script(task: HarborTask, plan: OfflinePlan | None = None) -> str:
    """The self-contained test script of the converted task (see the module docstring)."""
    files = dict(task.tests_bundle)
    if plan is not None:
        files.update({rel: text.encode() for rel, text in plan.rewritten.items()})
    exports = ""
    if plan is not None and plan.needs_python:
        exports = "export " + " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items()) + "\n"
    judge = (_JUDGE.replace("__TXT__", REWARD_TXT).replace("__JSON__", REWARD_JSON)
             .replace("__PREFIX__", REWARD_LINE_PREFIX))
    script = f"""# Unpack the task's tests into {TESTS_DIR}, run them offline, judge by Harbor's reward files.
rm -rf {TESTS_DIR} /logs/verifier && mkdir -p {TESTS_DIR} /logs/verifier
base64 -d <<'PIVOT_TESTS_B64' | tar -xzf - -C {TESTS_DIR}
{_bundle_b64(files)}PIVOT_TESTS_B64
{judge.strip()}
export TEST_DIR={TESTS_DIR}
{exports}cd {task.workdir}
bash {TESTS_DIR}/{task.test_entry}
judge $?
"""
    if len(script.encode()) > MAX_TEST_SCRIPT_BYTES:
        raise HarborTaskError(f"{task.path}: the tests folder is too large to embed in the test script "
                              f"({len(script.encode())} bytes > {MAX_TEST_SCRIPT_BYTES}); move data files into "
                              f"the Docker image instead")
    return script


test_script.__test__ = False  # type: ignore[attr-defined]  # a function named test_*, not a pytest test
