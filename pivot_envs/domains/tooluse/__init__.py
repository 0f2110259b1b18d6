from pivot_envs.registration import EnvSpec

_V = "pivot_envs.domains.tooluse.verifier"
ENV_SPEC = EnvSpec(id="PivotToolUse-v0", entry_point="pivot_envs.domains.tooluse.env:ToolUseEnv", domain="tooluse",
                   verifiers={name: f"{_V}:{cls}.for_env" for name, cls in (
                       ("functional", "FunctionalVerifier"), ("canonical", "CanonicalVerifier"),
                       ("execution", "ExecutionVerifier"), ("paper", "PaperVerifier"), ("exact", "ExactVerifier"))},
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1})
