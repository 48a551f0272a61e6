"""A model's name, parsed once: its architecture ("L0", "L1", "L2") and the seed it was initialised with.

"L2" is the run's own L2; "L2-s2" is L2 initialised with seed 2, trained on the run's batch order
(06's other seeds). Every other module asks this one: ``ModelName.parse`` refuses an unknown name
in one line naming the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAMES = ("L0", "L1", "L2")
SEED_MARK = "-s"  # "L2-s2": model L2 initialised with seed 2 (the run's batch order kept)


@dataclass(frozen=True)
class ModelName:
    """``base``: the architecture; ``seed``: the initialisation seed a name carries (None: the run's)."""

    base: str
    seed: int | None = None

    @classmethod
    def parse(cls, name: str | ModelName) -> ModelName:
        if isinstance(name, ModelName):
            return name
        base, mark, seed = str(name).partition(SEED_MARK)
        if base not in MODEL_NAMES or (mark and not seed.isdigit()):
            raise KeyError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}, optionally with a seed as in 'L2-s2'")
        return cls(base, int(seed) if mark else None)

    @property
    def n_layers(self) -> int:
        return int(self.base[1:])

    def with_seed(self, seed: int, run_seed: int) -> ModelName:
        """This architecture initialised with ``seed``: the plain name for the run's own seed."""
        return ModelName(self.base, None if seed == run_seed else int(seed))

    def __str__(self) -> str:
        return self.base if self.seed is None else f"{self.base}{SEED_MARK}{self.seed}"


def model_base(name: str | ModelName) -> str:
    """The architecture of a model name: "L2" for "L2" and for "L2-s2" (another seed)."""
    return ModelName.parse(name).base


def name_seed(name: str | ModelName) -> int | None:
    """The initialisation seed a model name carries: k for "L2-s<k>", None for a plain name."""
    return ModelName.parse(name).seed


def seeded_name(name: str | ModelName, seed: int, run_seed: int) -> str:
    """The name of model ``name`` initialised with ``seed``: the plain name for the run's own seed."""
    return str(ModelName.parse(name).with_seed(seed, run_seed))
