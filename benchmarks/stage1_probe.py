"""Stage-1 probe: how often the broad pre-training forms the copy circuit under a recipe variant.

One draw per seed (no redraws), each printed as a JSON line with the guard's group-A and tool-use success
and the loss at the end; a draw that missed the circuit ends at loss 0.2-0.7 with group A below 90%.

    python benchmarks/stage1_probe.py --seeds 10,11,12 --lr 1e-3            # the dev preset with another peak rate
    python benchmarks/stage1_probe.py --seeds 10,11,12 --heads 4            # or another head count

Draws are cached under $PIVOTRL_CACHE like every base (the spec includes the variant).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from pivot_algo.experiments import bases, presets


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seeds", required=True, help="comma-separated dev seeds")
    ap.add_argument("--lr", type=float, default=None, help="stage 1's peak rate (default: the dev preset's)")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: the world model's)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    p = dataclasses.replace(presets.PRESETS["dev"], stage1_draws=1)
    if args.lr is not None:
        p = dataclasses.replace(p, pretrain_lr=args.lr)
    if args.heads is not None:
        p = dataclasses.replace(p, model={**p.model, "num_attention_heads": args.heads, "num_key_value_heads": args.heads})
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        record = json.loads((bases.pretrain_broad(p, seed) / "pretrain.json").read_text())["draws"][0]
        print(json.dumps({"seed": seed, "lr": p.pretrain_lr, "heads": p.model["num_attention_heads"],
                          "group_a": record["group_a"], "tool": record["tool"],
                          "loss_last": round(record["loss_last"][-1], 4), "seconds": round(time.perf_counter() - t0)}),
              flush=True)


if __name__ == "__main__":
    main()
