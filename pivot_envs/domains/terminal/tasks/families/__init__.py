"""Terminal task families. Importing this package registers every family in `FAMILIES`."""

from pivot_envs.domains.terminal.tasks.families import data, dev, files, text  # noqa: F401  (registers)
from pivot_envs.domains.terminal.tasks.families._base import (
    FAMILIES,
    Draft,
    Family,
    family,
)

__all__ = ["FAMILIES", "Draft", "Family", "family"]
