"""The terminal task suite: seeded task families with scripted experts, splits, and a recorder
that turns them into SFT trajectories by running them in a real sandbox.

    generate_tasks(n, seed, families=None) -> list[TaskSpec]
    suite(split, n, seed=0) -> list[TaskSpec]      # "train" | "val" | "test" | "heldout_families"
    record_trajectory(task, backend) -> dict       # raises ExpertFailedError if the expert fails
    builtin_trajectories(split, n=None, seed=0, backend=None) -> list[dict]
    format_tool_output(ExecResult) -> str          # the tool-message format, shared with the env
"""

from pivot_envs.domains.terminal.tasks.families import FAMILIES
from pivot_envs.domains.terminal.tasks.format import (
    BASH_TOOL,
    format_tool_output,
    system_prompt,
)
from pivot_envs.domains.terminal.tasks.generator import (
    HELDOUT_FAMILIES,
    SPLITS,
    family_names,
    generate_tasks,
    make_task,
    suite,
)
from pivot_envs.domains.terminal.tasks.recorder import (
    ExpertFailedError,
    TaskCheck,
    builtin_trajectories,
    check_task,
    load_recorded,
    record_trajectory,
)
from pivot_envs.domains.terminal.tasks.spec import ExpertStep, TaskSpec

__all__ = ["BASH_TOOL", "FAMILIES", "HELDOUT_FAMILIES", "SPLITS", "ExpertFailedError", "ExpertStep", "TaskCheck",
           "TaskSpec", "builtin_trajectories", "check_task", "family_names", "format_tool_output", "generate_tasks",
           "load_recorded", "make_task", "record_trajectory", "suite", "system_prompt"]
