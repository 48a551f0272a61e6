"""rllc: refined local learning coefficients of attention heads, reproduced literately.

The notebooks under ``notebooks/`` tell the story; this package does the work. Layers, lowest
first (a module imports only from its own layer or below; ``tests/test_layers.py`` checks it):

  config, paths, io, provenance,  foundation
  numerics, model_name
  data/                           corpora, tokenizer, token datasets
  model/                          builders, fused forward, components, checkpoint stores
  run                             a run directory: config, checkpoints, load_model
  train                           the training loop
  estimate/                       SGLD, LLC estimates, calibration, known-λ models, sweeps
  analysis/                       scores, interventions, patterns, stages, clustering, refinements,
                                  the reference run and the claims' calibrated criteria
  report/                         table registry, claims, figures, viewer
  notebook, cli, runner           the faces
"""

from .config import Config, load_config
from .estimate.llc import estimate_llc, sample_llc
from .estimate.records import collect
from .estimate.result import LLCResult
from .estimate.sweep import estimate_one, run_sweep
from .model.components import component_masks, head_names
from .run import Run, create_run, load_model, open_run
from .train import train_model

__all__ = ["Config", "LLCResult", "Run", "collect", "component_masks", "create_run", "estimate_llc", "estimate_one",
           "head_names", "load_config", "load_model", "open_run", "run_sweep", "sample_llc", "train_model"]
__version__ = "0.2.0"
