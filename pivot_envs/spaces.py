"""Gymnasium spaces for conversations (observations) and model output (actions)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pivot_envs.parsing import render_bash_call
from pivot_envs.trajectory import ROLES


class ConversationSpace(gym.Space):
    """Observation: `{"messages": [OpenAI chat messages], "tools": [OpenAI tool schemas]}`.

    The conversation so far (system, user, assistant, tool messages) plus the tools the agent may
    call. Not a tensor space: policies render it with their chat template.
    """

    def __init__(self, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or set(x) != {"messages", "tools"}:
            return False
        if not isinstance(x["messages"], list) or not isinstance(x["tools"], list):
            return False
        return all(isinstance(m, dict) and m.get("role") in ROLES for m in x["messages"])

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        words = ["list", "the", "files", "in", "/app", "please", "count", "lines"]
        text = " ".join(self.np_random.choice(words, size=int(self.np_random.integers(1, 8))))
        return {"messages": [{"role": "user", "content": text}], "tools": []}

    def __repr__(self) -> str:
        return "ConversationSpace()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConversationSpace)


class AssistantActionSpace(gym.Space):
    """Action: the model's raw text (parsed by the env's tool-call parser) or an assistant message dict
    (`{"role": "assistant", "content": ..., "tool_calls": [...]}`)."""

    def __init__(self, max_length: int = 65536, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return len(x) <= self.max_length
        return isinstance(x, dict) and x.get("role", "assistant") == "assistant"

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """Random text: mostly malformed on purpose (tests that bad output gives a verdict)."""
        commands = ["ls", "pwd", "cat README.md", "echo hi", "true"]
        if self.np_random.random() < 0.5:
            cmd = str(self.np_random.choice(commands))
            return render_bash_call(cmd)
        n = int(self.np_random.integers(0, 40))
        return "".join(chr(int(c)) for c in self.np_random.integers(32, 127, size=n))

    def __repr__(self) -> str:
        return f"AssistantActionSpace(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssistantActionSpace) and other.max_length == self.max_length
