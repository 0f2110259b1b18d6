"""TRL glue: the env's verifier as a `trl.GRPOTrainer` reward function, and pivots as its dataset.

    from pivot_algo.integrations.trl import pivot_reward, trl_dataset
    trainer = GRPOTrainer(model=model_dir, reward_funcs=pivot_reward(env), args=GRPOConfig(...),
                          train_dataset=trl_dataset(pivots, tokenizer), processing_class=tokenizer)

`pivot_reward(env)` has TRL's reward-function signature `(prompts, completions, **columns) ->
list[float | None]`: each completion is judged at its row's (`trajectory_id`, `turn`) state. A
masked verdict (an infrastructure failure) returns `None`, which TRL (>= 1.0) leaves out of the
group baseline and gives no advantage - never a reward of 0. `env` may also be a
`pivot_algo.distributed.VerifierPool`, to judge a batch in parallel on Ray actors.

`trl_dataset(pivots, tokenizer)` renders each row's conversation AND its tool schemas with the
tokenizer's chat template into a text prompt (TRL's conversational path renders no per-row tools),
so the model sees exactly the prompt that `Policy.prompt_ids` builds at that state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pivot_algo.integrations.judging import IntegrationError, StateJudge


class PivotReward:
    """A TRL reward function over a pivot-mode env or a VerifierPool (see the module docstring)."""

    def __init__(self, source: Any, *, name: str = "pivot_verifier"):
        self.judge = StateJudge(source)
        self.__name__ = name  # TRL logs rewards under the function's __name__
        self.last_verdicts: list[Any] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], trajectory_id: Sequence[str] | None = None,
                 turn: Sequence[int] | None = None, **columns: Any) -> list[float | None]:
        if trajectory_id is None or turn is None:
            raise IntegrationError("the reward needs the dataset columns 'trajectory_id' and 'turn' (build the dataset "
                                   "with pivot_algo.pivots_dataset.pivots_to_dataset)")
        verdicts = self.judge.judge(trajectory_id, turn, completions)
        self.last_verdicts = verdicts
        return [None if v.masked else float(v.reward) for v in verdicts]


def pivot_reward(source: Any, *, name: str = "pivot_verifier") -> PivotReward:
    """The verifier of `source` (a pivot-mode env or a VerifierPool) as a TRL reward function."""
    return PivotReward(source, name=name)


def trl_dataset(pivots: Any, tokenizer: Any) -> Any:
    """The pivots dataset with `prompt` replaced by the rendered text prompt (conversation + tools +
    generation prompt), ready for `GRPOTrainer(train_dataset=...)`. Other columns stay (the reward
    reads `trajectory_id` and `turn`)."""
    from pivot_algo.policy.chat_template import render

    if "exact" not in pivots.column_names:
        raise IntegrationError("trl_dataset needs a pivots dataset (pivot_algo.pivots_dataset.pivots_to_dataset)")
    texts = []
    for raw in pivots["exact"]:
        exact = json.loads(raw)
        texts.append(render(tokenizer, exact["prompt"], exact["tools"], add_generation_prompt=True))
    return pivots.remove_columns(["prompt"]).add_column("prompt", texts)
