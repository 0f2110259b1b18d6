"""PivotSWE-v0: bug fixing in real Python repositories (see env.py and README.md)."""

from pivot_envs.registration import EnvSpec

_V = "pivot_envs.domains.swe.verifier"
ENV_SPEC = EnvSpec(id="PivotSWE-v0", entry_point="pivot_envs.domains.swe.env:SWEEnv", domain="swe",
                   verifiers={"execution": f"{_V}:SWEVerifier.for_env", "paper": f"{_V}:PaperVerifier.for_env"},
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1}, sandboxes=("docker",))
