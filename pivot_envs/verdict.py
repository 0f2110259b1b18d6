"""What a verifier says about one sampled action: `Verdict`.

Three outcomes, never confused:
- equivalent action: reward 1, `equivalent=True`;
- wrong action (bad format, unknown tool, different effect): reward 0 with a `reason`;
- infrastructure failure (sandbox died, daemon gone): `failure_kind` set and `masked=True` -> the
  sample is dropped from the update instead of being scored 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

# failure kinds (infra, masked) -- anything the *model* did wrong is a reason, not a failure kind.
INFRA_FAILURE_KINDS = ("sandbox_error", "replay_error", "verifier_error", "timeout_infra")


@dataclasses.dataclass
class Verdict:
    reward: float
    equivalent: bool
    reason: str
    failure_kind: str | None = None
    method: str = ""  # which check decided: "execution", "canonical", "exact", "paper", ...
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def masked(self) -> bool:
        """True when the sample must not count (infrastructure failure, not the model's fault)."""
        return self.failure_kind is not None

    @classmethod
    def correct(cls, reason: str, method: str, **details) -> Verdict:
        return cls(1.0, True, reason, None, method, details)

    @classmethod
    def wrong(cls, reason: str, method: str, **details) -> Verdict:
        return cls(0.0, False, reason, None, method, details)

    @classmethod
    def infra(cls, kind: str, reason: str, method: str = "", **details) -> Verdict:
        return cls(0.0, False, reason, kind, method, details)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class NoSettings:
    """Base of a verifier that takes nothing from the env: its factory (`EnvSpec.verifiers`) is
    `Class.for_env`, which ignores the env."""

    @classmethod
    def for_env(cls, env: Any) -> Any:
        return cls()


class Verifier(Protocol):
    """`judge(state, action, reference) -> Verdict`. `state` is the domain's state handle at turn k,
    `action` a `ParsedAction`, `reference` the demonstration's assistant message."""

    name: str

    def judge(self, state: Any, action: Any, reference: dict) -> Verdict: ...
