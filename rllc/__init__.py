"""rllc: refined local learning coefficients of attention heads, reproduced literately.

The notebooks under ``notebooks/`` tell the story; this package does the work.
"""

from .config import Config, load_config
from .train import load_model, resolve_run_dir, run_config, train_model

__all__ = ["Config", "load_config", "load_model", "resolve_run_dir", "run_config", "train_model"]
__version__ = "0.1.0"
