"""Checkpoint store of one model in a run directory.

Layout: ``<run>/models/<name>/``
  identity.json           the settings the weights depend on (a mismatch is refused)
  checkpoints/step_XXXXXX.pt   model weights at each scheduled step (for analysis)
  resume.pt               model + optimiser state + step + log (latest resume point)
  log.csv                 train loss every log_every steps, test loss at checkpoints
All writes are atomic, so a killed run leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write, read_json, write_json

_STEP_RE = re.compile(r"step_(\d+)\.pt$")


@dataclass(frozen=True)
class CheckpointStore:
    root: Path

    @classmethod
    def for_model(cls, run_dir: str | Path, name: str) -> CheckpointStore:
        return cls(Path(run_dir) / "models" / name)

    @property
    def ckpt_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def resume_path(self) -> Path:
        return self.root / "resume.pt"

    @property
    def log_path(self) -> Path:
        return self.root / "log.csv"

    def verify_identity(self, identity: dict[str, Any]) -> None:
        """Refuse (without writing anything) when the store holds weights of other settings."""
        path = self.root / "identity.json"
        if path.exists():
            old = read_json(path)
            if old != identity:
                diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
                hint = (" (its numerics differ: thread count or pinned CPU settings, rllc.numerics; run through "
                        "`rllc` or `make`, which pin them, with the profile's train.threads)"
                        if "numerics" in diff else "")
                raise IdentityMismatch(
                    f"{self.root} holds a model trained with other settings (differs in {diff}){hint}; "
                    "use another run directory or delete this one")

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Record what the weights depend on; refuse to mix runs with different settings."""
        self.verify_identity(identity)
        path = self.root / "identity.json"
        if not path.exists():
            write_json(path, identity)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files a killed writer left behind (the real files are intact: writes
        are atomic). Call only when no other process writes to this store."""
        stale = list(self.root.rglob(".*.tmp")) if self.root.exists() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def steps(self) -> list[int]:
        if not self.ckpt_dir.exists():
            return []
        return sorted(int(m.group(1)) for p in self.ckpt_dir.iterdir() if (m := _STEP_RE.search(p.name)))

    def path(self, step: int) -> Path:
        return self.ckpt_dir / f"step_{step:06d}.pt"

    def save_weights(self, step: int, state_dict: dict[str, torch.Tensor]) -> None:
        cpu = {k: v.detach().to("cpu") for k, v in state_dict.items()}
        atomic_write(self.path(step), lambda p: torch.save(cpu, p))

    def load_weights(self, step: int | str) -> dict[str, torch.Tensor]:
        available = self.steps()
        if step == "last":
            if not available:
                raise FileNotFoundError(f"no checkpoints in {self.ckpt_dir}")
            step = available[-1]
        if int(step) not in available:
            raise FileNotFoundError(f"no checkpoint at step {step} in {self.ckpt_dir}; available: {available}")
        return _load(self.path(int(step)), weights_only=True)

    def save_resume(self, state: dict[str, Any]) -> None:
        atomic_write(self.resume_path, lambda p: torch.save(state, p))

    def load_resume(self) -> dict[str, Any] | None:
        if not self.resume_path.exists():
            return None
        return _load(self.resume_path, weights_only=False)


class IdentityMismatch(RuntimeError):
    """A checkpoint store holds a model trained with other settings than the ones asked for."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated by a full disk, a copy, ...)."""


def _load(path: Path, weights_only: bool) -> Any:
    """``torch.load`` with one clear line (and the fix) instead of a zip-archive traceback."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CorruptCheckpoint(
            f"{path} is truncated or corrupt ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            f"delete it and rerun `rllc train` with the same profile and run directory to rewrite it"
        ) from None
