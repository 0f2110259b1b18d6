from pivot_envs.registration import EnvSpec

_V = "pivot_envs.domains.terminal.verifier"
ENV_SPEC = EnvSpec(id="PivotTerminal-v0", entry_point="pivot_envs.domains.terminal.env:TerminalEnv", domain="terminal",
                   verifiers={"execution": f"{_V}:ExecutionVerifier.for_env", "paper": f"{_V}:PaperVerifier.for_env",
                              "exact": "pivot_envs.verifiers:ExactVerifier.for_env"},
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1}, sandboxes=("local", "docker"))
