"""One-off record (world v11, 2026-12-05): carry the dev grid's finished cells of seeds whose stage 1
converged in its first cosine cycle from the `stage1_cycles` recipe (preset key OLD) to the
`stage1_draws` recipe (preset key NEW), instead of recomputing them.

Why this is exact, not an approximation: both recipes run the same first cycle (same initialisation
seed, same batch order, same schedule, same guard evaluation); they differ only in what happens when
the guard fails after it (another cycle on the same model vs a fresh draw). For a seed whose old
pretrain.json shows one cycle that passed the guard, the new recipe produces the same weights, so the
same stage 2 and the same cells. The script checks exactly that and refuses otherwise; every carried
file records `migrated_from`. (Determinism was seen directly: the new recipe's seed-2 log repeats the
old log's losses to the third decimal.)

    python migrate_draws.py CACHE CELLS_ROOT OLD NEW SEED [SEED ...]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from pivot_algo.experiments import bases, presets
from pivot_algo.experiments.stages import StageCache


def main(cache: Path, cells_root: Path, old: str, new: str, seeds: list[int]) -> None:
    preset = presets.PRESETS["dev"]
    assert preset.key() == new, (preset.key(), new)
    for seed in seeds:
        broad_spec = bases._broad_spec(preset, seed)
        old_broad = [d for d in cache.glob("miniworld-broad-*") if (d / "pretrain.json").is_file()
                     and _matches_old(json.loads((d / "pretrain.json").read_text()), broad_spec)]
        assert len(old_broad) == 1, (seed, old_broad)
        info = json.loads((old_broad[0] / "pretrain.json").read_text())
        cycles = info["cycles"]
        assert len(cycles) == 1 and min(cycles[0]["group_a"], cycles[0]["tool"]) >= preset.select_ood_min, cycles
        new_broad = cache / bases.cache_name("broad", broad_spec)
        if not new_broad.exists():
            shutil.copytree(old_broad[0], new_broad)
            draw = {"draw": 0, "init_seed": bases.stage1_init_seed(seed, 0), "group_a": cycles[0]["group_a"],
                    "tool": cycles[0]["tool"], "loss_first": info["loss_first"], "loss_last": info["loss_last"],
                    "loss_every_50": info["loss_every_50"]}
            rest = {k: v for k, v in info.items() if k not in broad_spec and k not in ("cycles", "loss_first", "loss_last",
                                                                                       "loss_every_50")}
            (new_broad / "pretrain.json").write_text(json.dumps({**broad_spec, **rest, "draws": [draw], "chosen_draw": 0,
                                                                 "migrated_from": old_broad[0].name}))
        base_spec = bases._base_spec(preset, seed)
        old_base = [d for d in cache.glob("miniworld-base-*") if (d / "pretrain.json").is_file()
                    and _matches_old(json.loads((d / "pretrain.json").read_text()), base_spec)]
        assert len(old_base) == 1, (seed, old_base)
        new_base = cache / bases.cache_name("base", base_spec)
        if not new_base.exists():
            shutil.copytree(old_base[0], new_base)
            binfo = json.loads((old_base[0] / "pretrain.json").read_text())
            binfo.update(base_spec)
            binfo.pop("cycles", None)
            binfo["stage1"] = json.loads((new_broad / "pretrain.json").read_text())
            binfo["migrated_from"] = old_base[0].name
            (new_base / "pretrain.json").write_text(json.dumps(binfo))
        src, dst = StageCache(cells_root / old), StageCache(cells_root / new)
        for f in sorted((cells_root / old).glob(f"seed{seed}__*.json")):
            stored = json.loads(f.read_text())
            spec = {**stored["spec"], "preset": new}
            if dst.get(stored["name"], spec) is None:
                dst.put(stored["name"], spec, stored["value"], wall_s=stored.get("wall_s"))
                moved = json.loads((cells_root / new / f.name).read_text())
                moved["migrated_from"] = old
                (cells_root / new / f.name).write_text(json.dumps(moved))
            print(f"seed {seed}: {f.name} carried", flush=True)
        del src


def _matches_old(info: dict, new_spec: dict) -> bool:
    """An old-recipe stage file whose spec equals `new_spec` but for the recipe fields (v 8, cycles)."""
    if info.get("v") != 8:
        return False
    skip = {"v", "draws", "cycles"}
    return all(info.get(k) == v for k, v in new_spec.items() if k not in skip)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # the grid's bases are 1-thread bases (the thread count is part of their key)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], [int(x) for x in sys.argv[5:]])
