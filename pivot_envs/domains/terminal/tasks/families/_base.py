"""Family registry and the shared vocabulary families draw names and contents from.

A family is a function `build(rng) -> Draft`: everything random in a task (names, contents,
parameters, the expert's phrasing) comes from `rng`, which the generator seeds from the family name
and the task seed, so the same seed always gives the same task.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from pivot_envs.domains.terminal.tasks.spec import ExpertStep


@dataclasses.dataclass
class Draft:
    """What a family returns; the generator turns it into a TaskSpec."""

    instruction: str
    setup: str
    test: str
    expert: list[ExpertStep]
    final_message: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def step(self, thought: str, command: str) -> None:
        self.expert.append(ExpertStep(thought, command))


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    category: str
    build: Callable[[random.Random], Draft]


FAMILIES: dict[str, Family] = {}


def family(name: str, category: str) -> Callable[[Callable[[random.Random], Draft]], Callable[[random.Random], Draft]]:
    """Register a family builder under `name`."""

    def register(fn: Callable[[random.Random], Draft]) -> Callable[[random.Random], Draft]:
        if name in FAMILIES:
            raise ValueError(f"terminal task family {name!r} is registered twice")
        FAMILIES[name] = Family(name, category, fn)
        return fn

    return register


WORDS = ("alpha", "amber", "apple", "arrow", "atlas", "birch", "blaze", "cedar", "cobalt", "comet",
         "coral", "delta", "ember", "falcon", "fern", "flint", "frost", "garnet", "harbor", "hazel",
         "indigo", "iris", "jade", "juniper", "kestrel", "lagoon", "lemon", "lotus", "maple", "meadow",
         "nectar", "nova", "oak", "onyx", "orbit", "pebble", "pine", "quartz", "raven", "river",
         "saffron", "sage", "sierra", "spruce", "tango", "thistle", "topaz", "umber", "velvet",
         "willow", "zephyr")
FIRST_NAMES = ("alice", "bruno", "chen", "dana", "emeka", "farah", "goran", "hana", "ivan", "jonas",
               "kira", "liam", "maya", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tara",
               "uma", "victor", "wen", "yusuf", "zoe")
CITIES = ("berlin", "cairo", "denver", "lagos", "lima", "lisbon", "madrid", "mumbai", "oslo",
          "osaka", "paris", "quito", "seoul", "sydney", "toronto", "vienna")
PRODUCTS = ("widget", "gadget", "sprocket", "gizmo", "bracket", "valve", "sensor", "cable",
            "switch", "filter", "nozzle", "spring")
REGIONS = ("north", "south", "east", "west", "central")


def pick(rng: random.Random, pool: tuple[str, ...], k: int) -> list[str]:
    """k distinct items of `pool`, in random order."""
    return rng.sample(list(pool), k)


def names(rng: random.Random, k: int, pool: tuple[str, ...] = WORDS, sep: str = "_") -> list[str]:
    """k distinct two-word names, e.g. 'amber_falcon'."""
    out: list[str] = []  # a list, not a set: set order depends on PYTHONHASHSEED
    while len(out) < k:
        a, b = rng.sample(list(pool), 2)
        if f"{a}{sep}{b}" not in out:
            out.append(f"{a}{sep}{b}")
    return out
