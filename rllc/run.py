"""A run directory: its config, its models' checkpoint stores, their steps, ``load_model``.

``open_run`` finds an existing run and never writes; ``create_run`` makes (or reuses) one for a
config and writes its ``config.yaml``. Relative run directories given to the package resolve
against the repository root, so a notebook finds the same run from any working directory
(Papermill runs kernels in the caller's folder, nbval in the notebook's).

Layout::

    <run>/config.yaml            the resolved configuration (and the provenance of who wrote it)
    <run>/models/<L0|L1|L2>/     one CheckpointStore per model (see rllc.model.checkpoints)
    <run>/llc/records/           cached LLC estimates (rllc.estimate.sweep)
    <run>/tables/, figures/      what the notebooks write (rllc.report)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from transformer_lens import HookedTransformer

from . import paths
from .config import Config, config_hash, data_seed, from_dict, model_base, profile_settings, seeded
from .data import tokens as tokens_mod
from .io import write_text
from .model.build import build_model
from .model.checkpoints import CheckpointStore
from .provenance import provenance


def identity(cfg: Config, name: str) -> dict[str, Any]:
    """Everything the weights of a model depend on, except how long it trains. A model of another
    seed ("L2-s2") differs in its seed and records the batch order's seed (unchanged for the run's
    own models, whose stored identities stay valid)."""
    c = seeded(cfg, name)
    t = c.train
    return {
        "model": model_base(name),
        "model_config": config_hash(c.model),
        "tokens": tokens_mod.tokens_key(c),
        "seed": c.seed,
        **({"data_seed": data_seed(c)} if data_seed(c) != c.seed else {}),
        "optimizer": config_hash({"batch": t.batch_size, "lr": t.lr, "wd": t.weight_decay, "betas": t.betas,
                                  **({"warmup": t.warmup_steps} if t.warmup_steps else {})}),
    }


def resolve_path(run_dir: str | Path) -> Path:
    """An absolute run path: relative paths are taken from the repository root, not the cwd."""
    path = Path(run_dir).expanduser()
    return path if path.is_absolute() else (paths.REPO_ROOT / path)


@dataclass(frozen=True)
class Run:
    """A run directory holding a config and (once trained) models."""

    path: Path

    @cached_property
    def cfg(self) -> Config:
        return run_config(self.path)

    @property
    def profile(self) -> str:
        return self.cfg.profile

    @property
    def tables(self) -> Path:
        return self.path / "tables"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def store(self, name: str = "L2") -> CheckpointStore:
        return CheckpointStore.for_model(self.path, name)

    def steps(self, name: str = "L2") -> list[int]:
        return self.store(name).steps()

    def load_model(self, name: str = "L2", step: int | str = "last",
                   device: str | torch.device = "cpu") -> HookedTransformer:
        return load_model(self.path, name, step, device)

    def __fspath__(self) -> str:
        return str(self.path)


def find_run(profile_or_run_dir: str | Path) -> Path:
    """A run directory as given (an existing directory), else the default run directory of a
    profile of that name. Never writes."""
    if isinstance(profile_or_run_dir, Run):
        return profile_or_run_dir.path
    run = resolve_path(profile_or_run_dir)
    if run.is_dir():
        return run
    return paths.default_run_dir(profile_name(profile_or_run_dir))


def profile_name(profile: str | Path) -> str:
    """The name of a profile given by name or as a YAML file (its ``profile:``, else its stem)."""
    if Path(profile).suffix in (".yaml", ".yml"):
        return profile_settings(profile)[0]
    return str(profile)


def require_run(profile_or_run_dir: str | Path) -> Path:
    """``find_run``, with a clear error when there is no run there yet."""
    run = find_run(profile_or_run_dir)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{str(profile_or_run_dir)!r} is neither a run directory nor a trained profile; "
                                f"train it with `rllc train --profile {profile_or_run_dir}`")
    return run


def open_run(profile_or_run_dir: str | Path) -> Run:
    """An existing run (a run directory, or the default one of a profile). Never writes."""
    return Run(require_run(profile_or_run_dir))


def run_config(run_dir: str | Path) -> Config:
    """The config a run directory was made with."""
    raw = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    raw = {k: v for k, v in raw.items() if k != "provenance"}
    return from_dict(raw["profile"], raw)


def run_profile(run_dir: str | Path) -> str | None:
    """The profile a run directory was made with; None for a folder that is not (yet) a run."""
    return run_config(run_dir).profile if (Path(run_dir) / "config.yaml").exists() else None


class ProfileMismatch(ValueError):
    """A run directory was made with another profile than the one named."""


def changed_settings(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings that differ between two configs."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "steps":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(old.to_dict()), flat(new.to_dict())
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def run_path(cfg: Config, run_dir: str | Path | None = None) -> Path:
    """Where ``create_run`` puts a config's run directory (computes, never writes)."""
    return resolve_path(run_dir) if run_dir else paths.default_run_dir(cfg.profile)


def create_run(cfg: Config, run_dir: str | Path | None = None) -> Run:
    """The run directory for ``cfg`` (``runs/<profile>`` by default), with ``config.yaml`` written.

    A directory made with another profile is refused (one run, one profile); one made with the
    same profile and other settings (overrides) is reused with a warning naming what changed.
    Models trained with settings their weights depend on are guarded separately (identity.json).
    """
    out = run_path(cfg, run_dir)
    existing = out / "config.yaml"
    if existing.exists():
        old = run_config(out)
        if old.profile != cfg.profile:
            raise ProfileMismatch(f"{out} was made with profile {old.profile!r}, not {cfg.profile!r}; "
                                  f"name --profile {old.profile}, or choose another --run-dir")
        changed = changed_settings(old, cfg)
        if changed:
            warnings.warn(f"{out}: settings differ from the run's config.yaml in {changed[:8]}"
                          f"{' …' if len(changed) > 8 else ''}; it is rewritten with the new ones",
                          stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    doc = {**cfg.to_dict(), "provenance": provenance()}
    write_text(existing, yaml.safe_dump(doc, sort_keys=False))
    return Run(out)


def load_model(profile_or_run_dir: str | Path, name: str = "L2", step: int | str = "last",
               device: str | torch.device = "cpu") -> HookedTransformer:
    """Any checkpoint of a run as a ``HookedTransformer``.

    ``profile_or_run_dir`` is a profile name (its default run directory) or a run directory.
    """
    run = require_run(profile_or_run_dir)
    cfg = run_config(run)
    store = CheckpointStore.for_model(run, name)
    weights = store.load_weights(step)
    vocab = weights["embed.W_E"].shape[0]
    model = build_model(cfg, name, vocab, device)
    model.load_state_dict(weights)
    model.eval()
    return model


def checkpoint_steps(profile_or_run_dir: str | Path, name: str = "L2") -> list[int]:
    return CheckpointStore.for_model(find_run(profile_or_run_dir), name).steps()
