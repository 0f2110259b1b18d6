from pivot_envs.registration import EnvSpec

ENV_SPEC = EnvSpec(id="PivotTerminal-v0", entry_point="pivot_envs.domains.terminal.env:TerminalEnv",
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1}, sandboxes=("local", "docker"))
