"""Glue for the trainers users already have: TRL (`trl.py`), the `verifiers` package
(`verifiers_env.py`) and veRL (`verl.py`). Each module imports its framework only when used.

All three judge a completion the same way: at its start state (trajectory id + turn, carried by the
dataset row), by the env's verifier, in-process (a Gymnasium env) or on a Ray pool
(`pivot_algo.distributed.VerifierPool`). An infrastructure failure is never a reward of 0: TRL gets
`None` (it drops the sample), veRL and verifiers get a masked result (see each module).
"""
