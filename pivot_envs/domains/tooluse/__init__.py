from pivot_envs.registration import EnvSpec

ENV_SPEC = EnvSpec(id="PivotToolUse-v0", entry_point="pivot_envs.domains.tooluse.env:ToolUseEnv",
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1})
