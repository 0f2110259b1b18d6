"""Harbor / Terminal-Bench task folders -> pivotrl terminal tasks and SFT trajectories.

    python -m pivot_envs.domains.terminal.harbor convert DIR --out tasks.jsonl

Modules, in the order a task goes through them:
    task.py             read and validate a folder (task.toml or task.yaml layout) -> HarborTask
    offline.py          what the tests install -> installed at image build; install lines neutralised
    verifier_script.py  the converted `test` script and Harbor's reward rule (reward.txt, reward.json, exit)
    splitter.py         solve.sh -> steps, with the shell state a step sets carried into later steps
    convert.py          build the image (cached by content hash), check the initial state, record
    folder.py           a whole directory, resumable, with a summary table
    agent_runs.py       recorded agent runs (ATIF) on a task folder -> its terminal trajectories, checked there
The recording itself is the terminal suite's recorder (`tasks.recorder.record_commands`).
"""

from pathlib import Path

from pivot_envs.domains.terminal.harbor.convert import (
    EPISODE_ONLY_MESSAGE,
    FINAL_MESSAGE,
    ConvertedTask,
    TaskRefusedError,
    build_image,
    convert_task,
    image_tag,
    offline_plan,
    record_solution,
    to_task_dict,
)
from pivot_envs.domains.terminal.harbor.folder import (
    FolderReport,
    TaskOutcome,
    convert_folder,
    find_task_folders,
)
from pivot_envs.domains.terminal.harbor.offline import (
    OfflinePlan,
    TestsNeedNetworkError,
    plan_test_dependencies,
)
from pivot_envs.domains.terminal.harbor.splitter import SolutionScript, split_solution
from pivot_envs.domains.terminal.harbor.task import (
    HarborTask,
    HarborTaskError,
    dockerfile_workdir,
    load_task,
    parse_memory_mb,
    parse_task_toml,
    parse_task_yaml,
)
from pivot_envs.domains.terminal.harbor.verifier_script import (
    REWARD_LINE_PREFIX,
    test_script,
)

BUILTIN_TASKS_DIR = Path(__file__).resolve().parent.parent / "harbor_tasks"

__all__ = ["BUILTIN_TASKS_DIR", "EPISODE_ONLY_MESSAGE", "FINAL_MESSAGE", "REWARD_LINE_PREFIX", "ConvertedTask",
           "FolderReport", "HarborTask", "HarborTaskError", "OfflinePlan", "SolutionScript", "TaskOutcome",
           "TaskRefusedError", "TestsNeedNetworkError", "build_image", "convert_folder", "convert_task",
           "dockerfile_workdir", "find_task_folders", "image_tag", "load_task", "offline_plan", "parse_memory_mb",
           "parse_task_toml", "parse_task_yaml", "plan_test_dependencies", "record_solution", "split_solution",
           "test_script", "to_task_dict"]
