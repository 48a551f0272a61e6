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

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from transformer_lens import HookedTransformer

from . import numerics, paths
from .config import Config, config_hash, data_seed, from_dict, profile_settings, seeded
from .data import tokens as tokens_mod
from .io import write_text
from .model.build import build_model
from .model.checkpoints import CheckpointStore
from .model_name import model_base
from .provenance import provenance


def identity(cfg: Config, name: str) -> dict[str, Any]:
    """Everything the weights of a model depend on, except how long it trains. A model of another
    seed ("L2-s2") differs in its seed and records the batch order's seed (unchanged for the run's
    own models, whose stored identities stay valid). ``numerics``: the thread count it trains with
    and the pinned CPU settings of this process (``rllc.numerics``): a resume under others is refused."""
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
        "numerics": numerics.numerics_record(numerics.threads(cfg, name)),
    }


def resolve_path(run_dir: str | Path) -> Path:
    """An absolute run path: relative paths are taken from the repository root, not the cwd."""
    path = Path(run_dir).expanduser()
    return path if path.is_absolute() else (paths.REPO_ROOT / path)


@dataclass(frozen=True)
class Run:
    """A run directory holding a config and (once trained) models: the one handle of a run.

    A profile name or a path becomes a ``Run`` once, where it enters (the command line, a
    notebook's parameters, ``open_run`` and the other public entry points); everything below
    takes the ``Run`` and reads its configuration from it (``cfg``, read once)."""

    path: Path
    # the settings in use when a profile given with the run directory differs from the run's own in
    # a setting its weights and data do not depend on (``reconcile``); else the run's config.yaml
    config: Config | None = field(default=None, compare=False, repr=False)

    @cached_property
    def cfg(self) -> Config:
        return self.config if self.config is not None else run_config(self.path)

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
        """A checkpoint of one of the run's models as a ``HookedTransformer``."""
        weights = self.store(name).load_weights(step)
        model = build_model(self.cfg, name, weights["embed.W_E"].shape[0], device)
        model.load_state_dict(weights)
        model.eval()
        return model

    def __fspath__(self) -> str:
        return str(self.path)


def folder(run: Run | str | Path) -> Path:
    """Where a run's tables and figures are: a ``Run``'s directory, or a folder given as a path
    (relative ones from the repository root), such as a seed's view of a run (``report.seeds``).
    Reads nothing; a profile name is resolved by ``open_run``, where it enters, not here."""
    return run.path if isinstance(run, Run) else resolve_path(run)


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


def open_run(profile_or_run_dir: Run | str | Path) -> Run:
    """An existing run (a ``Run`` as it is, a run directory, or the default one of a profile).
    Never writes."""
    if isinstance(profile_or_run_dir, Run):
        return profile_or_run_dir
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


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "steps":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings that differ between two configs."""
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# The settings a run's weights or data depend on (what ``identity`` and the token datasets are
# made of): a profile that differs from a run in one of them is refused, naming it. Any other
# setting that differs is used, with one line saying so.
WEIGHT_SETTINGS = ("seed", "corpus.", "tokenizer.", "model.", "train.batch_size", "train.lr", "train.weight_decay",
                   "train.betas", "train.warmup_steps", "train.data_seed", "train.threads", "train.deterministic")


class SettingsMismatch(ValueError):
    """A profile differs from a run directory's own config in a setting its weights or data depend on."""


def is_weight_setting(name: str) -> bool:
    return any(name == w or (w.endswith(".") and name.startswith(w)) for w in WEIGHT_SETTINGS)


def reconcile(run_dir: str | Path, cfg: Config) -> list[str]:
    """The one rule for a profile and a run directory given together (every command, and the
    notebooks' parameters): nothing to say for a new run directory; a run of another profile is
    refused (``ProfileMismatch``); a setting the weights or data depend on that differs from the
    run's is refused in one line naming it (``SettingsMismatch``); every other setting that
    differs is used, and the returned lines say so, one each."""
    out = resolve_path(run_dir)
    if not (out / "config.yaml").exists():
        return []
    old = run_config(out)
    if old.profile != cfg.profile:
        raise ProfileMismatch(f"{out} was made with profile {old.profile!r}, not {cfg.profile!r}; "
                              f"name --profile {old.profile}, or choose another --run-dir")
    a, b = _flat(old.to_dict()), _flat(cfg.to_dict())
    changed = changed_settings(old, cfg)
    refused = [k for k in changed if is_weight_setting(k)]
    if refused:
        what = "; ".join(f"{k} {a.get(k)!r} in the run, {b.get(k)!r} in the profile" for k in refused)
        raise SettingsMismatch(f"{out}: the run's weights or data depend on {what}: refused; drop the setting "
                               f"from the profile, or choose another --run-dir")
    return [f"rllc: {out.name}: using the profile's {k} = {b.get(k)!r} (the run had {a.get(k)!r})" for k in changed]


def run_path(cfg: Config, run_dir: str | Path | None = None) -> Path:
    """Where ``create_run`` puts a config's run directory (computes, never writes)."""
    return resolve_path(run_dir) if run_dir else paths.default_run_dir(cfg.profile)


def create_run(cfg: Config, run_dir: str | Path | None = None) -> Run:
    """The run directory for ``cfg`` (``runs/<profile>`` by default), with ``config.yaml`` written.

    An existing directory goes through ``reconcile``: another profile, or another setting the
    weights or data depend on, is refused; any other setting that differs is used (config.yaml is
    rewritten with it), one line on stderr saying so. Models are guarded again by identity.json.
    """
    out = run_path(cfg, run_dir)
    existing = out / "config.yaml"
    for line in reconcile(out, cfg):
        print(line, file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    doc = {**cfg.to_dict(), "provenance": {**provenance(), "numerics": numerics.describe(numerics.threads(cfg))}}
    write_text(existing, yaml.safe_dump(doc, sort_keys=False))
    return Run(out)


def load_model(profile_or_run_dir: Run | str | Path, name: str = "L2", step: int | str = "last",
               device: str | torch.device = "cpu") -> HookedTransformer:
    """Any checkpoint of a run as a ``HookedTransformer`` (``profile_or_run_dir``: a ``Run``, a
    run directory, or a profile name for its default run directory)."""
    return open_run(profile_or_run_dir).load_model(name, step, device)
