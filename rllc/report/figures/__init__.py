"""Every figure in one house style (seaborn), saved atomically under the run directory.

One module a theme; every figure function is importable from here (``from rllc.report import figures
as plot``). Figures of LLC estimates take the ``SamplerConfig`` they were made with and carry it
(``style.mark_sampler``); ``style.savefig`` stamps every figure with what made it.

  style     the theme, colours, stage bands, the sampler stamp, savefig
  llc       LLC curves: full model and stages, calibration, known coefficients, distributions, controls
  heads     heads and types: scores, per-head rLLC curves, patterns, clusters, induction timing
  circuit   the multigram circuit: composition, path patching, the L1/L2 losses
  measures  curvature, ablation and Fisher measures beside the wrLLC; other seeds and transfer
"""

from __future__ import annotations

from .circuit import composition_curves, path_patching_curves, test_loss_pair
from .heads import (
    cluster_splits,
    head_llc_curves,
    icl_curve,
    induction_timing,
    multigrams_vs_llc,
    pattern_fractions,
    score_curves,
    score_distribution,
)
from .llc import (
    calibration_traces,
    domain_curves,
    known_vs_truth,
    llc_curve,
    loss_curves,
    stages_and_heads,
    warmup_controls,
)
from .measures import full_model_measures, head_measure_grid, seed_head_curves, transfer_scores
from .style import (
    PATTERN_COLORS,
    SCORE_LABELS,
    TYPE_COLORS,
    boundary_lines,
    head_palette,
    line_with_se,
    log_steps,
    mark_sampler,
    order_label,
    reference_label,
    sampler_stamp,
    savefig,
    stage_bands,
    type_linestyles,
    use_style,
)

__all__ = [
    "PATTERN_COLORS", "SCORE_LABELS", "TYPE_COLORS", "boundary_lines", "calibration_traces", "cluster_splits",
    "composition_curves", "domain_curves", "full_model_measures", "head_llc_curves", "head_measure_grid",
    "head_palette", "icl_curve", "induction_timing", "known_vs_truth", "line_with_se", "llc_curve",
    "log_steps", "loss_curves", "mark_sampler", "multigrams_vs_llc", "order_label", "path_patching_curves",
    "pattern_fractions", "reference_label", "sampler_stamp", "savefig", "score_curves", "score_distribution",
    "seed_head_curves", "stage_bands", "stages_and_heads", "test_loss_pair", "transfer_scores",
    "type_linestyles", "use_style", "warmup_controls",
]
