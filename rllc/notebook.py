"""The one setup call every notebook makes, and the helpers notebooks share.

``nb = setup(profile, config, run_dir)`` sets the figure style, resolves the config, creates (or
reuses) the run directory and returns a :class:`Session`: the config, the run, the sampler
settings, and lazily the final L2 model and its head names. Tables go through the registry
(``nb.write`` / ``nb.read``), figures through ``nb.savefig`` (stamped with what made them).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from . import numerics
from .config import Config, SamplerConfig, load_config
from .data import tokens as tokens_mod
from .model.components import head_names
from .report import figures, tables
from .run import Run, create_run


@dataclass
class Session:
    """What a notebook works with: config, run directory, sampler settings, the final model."""

    cfg: Config
    run: Run
    progress: bool = True
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> SamplerConfig:
        """The profile's SGLD settings (figures of estimates take and stamp them)."""
        return self.cfg.sampler

    @cached_property
    def final_model(self) -> HookedTransformer:
        """The last checkpoint of L2 (needs 00_train)."""
        return self.run.load_model("L2", "last")

    @cached_property
    def heads(self) -> list[str]:
        """Every head of L2 as "layer:head"."""
        m = self.final_model
        return head_names(m.cfg.n_layers, m.cfg.n_heads)

    @property
    def head_types(self) -> pd.Series:
        """Each head's final type, from 02's head table (needs 02_wrllc)."""
        return self.read("head_types").set_index("component")["type"]

    @property
    def stages(self) -> pd.DataFrame | None:
        """The stages of the full-model LLC curve (01), or None before 01 has run."""
        return self.read_optional("stages_L2")

    def held_in_windows(self) -> torch.Tensor:
        """The held-in windows of the tokens-in-context search (the same in 02 and 03)."""
        return tokens_mod.held_in_windows(self.cfg)

    def write(self, name: str, df: pd.DataFrame) -> Path:
        return tables.write(self.run, name, df)

    def read(self, name: str) -> pd.DataFrame:
        return tables.read(self.run, name)

    def read_optional(self, name: str) -> pd.DataFrame | None:
        return tables.read_optional(self.run, name)

    def savefig(self, fig: plt.Figure, name: str) -> Path:
        return figures.savefig(fig, self.run, name)


MISSING = "\u2014"  # how a missing number (a NaN standard error at a minimum count) is shown


def fmt(x: float | None, spec: str = ".2f") -> str:
    """A number for a computed reading: ``format(x, spec)``, or "—" where it is missing (NaN,
    e.g. the standard error of a single probe)."""
    return MISSING if x is None or not math.isfinite(float(x)) else format(x, spec)


def frame_html(df: pd.DataFrame) -> str:
    """A table as notebooks show it: pandas' HTML with missing numbers as "—"."""
    rows, cols = pd.get_option("display.max_rows"), pd.get_option("display.max_columns")
    return df.to_html(na_rep=MISSING, max_rows=rows, max_cols=cols, classes="dataframe")


def frame_text(df: pd.DataFrame) -> str:
    """The plain-text form of :func:`frame_html`."""
    return df.to_string(na_rep=MISSING, max_rows=pd.get_option("display.max_rows"),
                        max_cols=pd.get_option("display.max_columns"))


def _show_missing_as_dash() -> None:
    """Make IPython show every DataFrame with :func:`frame_html` / :func:`frame_text` (no-op
    outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, frame_html)
    formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(frame_text(df)))


def setup(profile: str, config: dict[str, Any] | None = None, run_dir: str | None = None,
          progress: bool = True, sampler_line: bool = True) -> Session:
    """Style, config, run directory; prints where the run is (and the SGLD settings). Tables
    displayed afterwards show missing numbers as "—"."""
    figures.use_style()
    _show_missing_as_dash()
    cfg = load_config(profile, config or {})
    run = create_run(cfg, run_dir or None)
    session = Session(cfg, run, progress)
    torch.set_num_threads(cfg.train.threads)  # the profile's, not the machine's (rllc.numerics)
    print(f"profile {cfg.profile}; run directory {run.path}; {cfg.train.threads} torch threads, CPU capability "
          f"{numerics.torch_capability()}")
    off = {k: os.environ.get(k, "unset") for k, v in numerics.pinned_env().items() if os.environ.get(k) != v}
    if off:
        print(f"warning: this kernel started without the project's numerics ({off}); its weights and estimates "
              f"may differ from a run's made through `rllc notebooks` or `make`")
    if sampler_line:
        print(figures.sampler_stamp(session.settings))
    return session
