"""The table registry: every table a run holds, its file, its columns and who writes it.

Notebooks write and the scorecard reads only through :func:`write` and :func:`read`, by the
registry name; a misspelt name fails at once instead of turning a claim into ``not computed``,
and a table missing a declared column is refused when written. ``columns`` are the columns a
reader may rely on (a table may carry more, e.g. one per score or sampler setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import write_table
from ..run import Run, folder

ESTIMATE_COLUMNS = ("model", "step", "component", "data", "llc_mean", "llc_std", "llc_sem", "se_kind", "n_chains",
                    "n_ok", "n_diverged", "n_below_init", "init_loss", "n_weights", "key")

CURVATURE_COLUMNS = ("step", "measure", "data", "component", "value", "se", "n_probes", "products", "seconds")


@dataclass(frozen=True)
class Table:
    name: str
    file: str  # relative to the run directory
    columns: tuple[str, ...]
    notebook: str  # the notebook that writes it ("rllc" when the package writes it itself)
    doc: str


def _t(name: str, file: str, columns: str | tuple[str, ...], notebook: str, doc: str) -> Table:
    cols = tuple(columns.split()) if isinstance(columns, str) else columns
    return Table(name, file, cols, notebook, doc)


_ALL = (
    # 00_train
    _t("corpus_sources", "tables/corpus_sources.csv", "source kind registry package version status n_documents n_bytes",
       "00_train", "registry sources of the training mixture and the held-out domains"),
    _t("token_counts", "tables/token_counts.csv", "split source documents bytes tokens", "00_train",
       "documents, bytes and tokens per split and source"),
    _t("model_shapes", "tables/model_shapes.csv", "model n_layers d_model n_heads d_head n_ctx d_vocab parameters",
       "00_train", "shapes and parameter counts of L0, L1, L2"),
    _t("training_log", "tables/training_log.csv", "step split loss model", "00_train",
       "train loss every log_every steps, test loss at checkpoints"),
    _t("behaviour_L2", "tables/behaviour_L2.csv", "model step layer head component score value", "00_train",
       "head scores and the ICL score (component 'model') at every checkpoint of L2"),
    _t("head_types_by_score", "tables/head_types_by_score.csv", "component previous_token current_token induction type",
       "00_train", "final scores and the score type of every head"),
    _t("checks_00", "tables/00_checks.csv", "check value threshold pass", "00_train",
       "the phenomena the profile should show (previous-token, induction heads, falling ICL score)"),
    # 01_llc_theory
    _t("llc_known", "tables/llc_known.csv", "family case truth estimate sem rel_error tolerance", "01_llc_theory",
       "estimates on models with a known learning coefficient"),
    _t("llc_calibration", "tables/llc_calibration.csv", "epsilon nbeta llc_mean llc_sem n_ok n_chains flags",
       "01_llc_theory", "the step size x nbeta grid at the last checkpoint"),
    _t("llc_full_L2", "tables/llc_full_L2.csv", ESTIMATE_COLUMNS, "01_llc_theory",
       "the full-model LLC of L2 over training"),
    _t("llc_rerun_spread", "tables/llc_rerun_spread.csv",
       "component step reference batch_order n mean sd_means rms_se variance_ratio ratio_lo ratio_hi calibrated",
       "01_llc_theory", "one estimate rerun with several seeds: spread of the means against the reported errors"),
    _t("stages_L2", "tables/stages_L2.csv", "stage start end llc_start llc_end ends_at trend", "01_llc_theory",
       "stages LM1..LMk between critical points of the full-model LLC curve that stand out of its noise"),
    _t("stages_L2_slope", "tables/stages_L2_slope.csv", "stage start end llc_start llc_end ends_at trend",
       "01_llc_theory", "the same stages by the earlier rule (slope sign changes of the smoothed curve, no noise)"),
    _t("test_loss_stages", "tables/test_loss_stages.csv", "stage start end llc_start llc_end ends_at trend",
       "01_llc_theory", "stages between noise-tied critical points of the test-loss curve (llc_* hold the loss)"),
    _t("noise_budget_stages", "tables/noise_budget_stages.csv",
       "claim difference signal noise ratio share_above_2se samples_needed seconds_now seconds_needed",
       "01_llc_theory", "claim 1: differences between neighbouring checkpoints against their standard errors"),
    _t("precision_tradeoff", "tables/precision_tradeoff.csv",
       "component chains draws llc_mean llc_sem seconds se_predicted se_ratio time_ratio se2_x_seconds",
       "01_llc_theory", "one estimate at every chains x draws setting: its error against its time"),
    _t("warmup_control", "tables/warmup_control.csv",
       "warmup_steps peak_step peak_llc warmup_fraction test_loss_at_peak verdict reason", "01_llc_theory",
       "the early LLC peak of L2 retrained with other warm-up lengths, and whether it follows the warm-up"),
    _t("run_end_trend", "tables/run_end_trend.csv", "measure decades change se z", "01_llc_theory",
       "how much the induction scores and the LLC still move over the last window of training"),
    # 02_wrllc
    _t("wrllc_L2", "tables/wrllc_L2.csv", ESTIMATE_COLUMNS, "02_wrllc",
       "per-head wrLLC (and full model) over training"),
    _t("score_thresholds", "tables/score_thresholds.csv", "score chance threshold max heads_above threshold_in_gap",
       "02_wrllc", "the type thresholds against the score distribution"),
    _t("tokens_in_context", "tables/tokens_in_context.parquet", "component rank sample pos delta_loss pattern",
       "02_wrllc", "each head's tokens in context and their pattern"),
    _t("head_types", "tables/head_types.csv", "component type final_wrllc n_multigrams top_pattern", "02_wrllc",
       "each head's final type (Table 1 analogue)"),
    _t("head_examples", "tables/head_examples.csv", "component rank pattern context next", "02_wrllc",
       "top tokens in context per head type"),
    _t("clusters_wr", "tables/clusters_wr.csv", "component k algorithm cluster layer", "02_wrllc",
       "clusters of the wrLLC curves per layer and k"),
    _t("clusters_ari_wr", "tables/clusters_ari_wr.csv", "k algorithm ari layer n_types matches_types", "02_wrllc",
       "ARI of every wrLLC clustering against the head types"),
    _t("noise_budget_heads", "tables/noise_budget_heads.csv",
       "claim difference signal noise ratio share_above_2se samples_needed seconds_now seconds_needed",
       "02_wrllc", "claim 3: the spread of a layer's wrLLCs at a checkpoint against one estimate's error"),
    _t("type_fragility", "tables/type_fragility.csv", "component score value threshold sd margin_sd fragile",
       "02_wrllc", "each head's type measure against its threshold, in units of its spread over the last checkpoints"),
    _t("type_rule_sensitivity", "tables/type_rule_sensitivity.csv",
       "component previous_token_share current_token_share induction type_paper type_v1", "02_wrllc",
       "per head: raw attention on random tokens and text, the type rule's shares, the score type under each rule"),
    _t("clusters_ari_variants", "tables/clusters_ari_variants.csv",
       "layer curves standardised algorithm k n_heads ari null_q95 null_q99 p_value p_family", "02_wrllc",
       "the ARI of each clustering variant of the wrLLC curves beside its random-label null"),
    _t("type_separation", "tables/type_separation.csv",
       "layer feature n_types eta2 null_q95 p_value p_bonferroni p_min", "02_wrllc",
       "how much of each wrLLC curve feature's variance lies between head types, against a permutation null"),
    # 03_drllc
    _t("dr_ratio_heads", "tables/dr_ratio_heads.csv", "component step wr dr data ratio", "03_drllc",
       "drLLC / wrLLC per head, checkpoint and code distribution"),
    _t("dr_ratio_by_type", "tables/dr_ratio_by_type.csv", "data window group n_heads mean_ratio candidates",
       "03_drllc", "mean drLLC / wrLLC per head group, at the end and over the last third"),
    _t("drllc_full_domains", "tables/drllc_full_domains.csv", ESTIMATE_COLUMNS, "03_drllc",
       "the full-model LLC on every distribution"),
    _t("drllc_domain_summary", "tables/drllc_domain_summary.csv", "data rank final_llc mean_offset shape_corr change",
       "03_drllc", "how each domain moves the full-model curve"),
    _t("icl_per_head", "tables/icl_per_head.csv", "component variant value step", "03_drllc",
       "ICL score per induction head with the others ablated"),
    _t("induction_timing", "tables/induction_timing.csv",
       "component measure from_step steepest_step onset_step spacing candidates",
       "03_drllc", "when each induction head's curves change fastest"),
    _t("examples_induction_dyck", "tables/examples_induction_dyck.csv", "component rank pattern context next",
       "03_drllc", "top tokens in context of the induction and Dyck heads"),
    _t("clusters_ari_refined", "tables/clusters_ari_refined.csv", "k algorithm ari curves layer n_types matches_types",
       "03_drllc", "ARI of clusterings of dr and wr+dr curves against the head types"),
    _t("clusters_ari_variants_refined", "tables/clusters_ari_variants_refined.csv",
       "layer curves standardised algorithm k n_heads ari null_q95 null_q99 p_value p_family", "03_drllc",
       "the ARI of each clustering variant of the dr and wr+dr curves beside its random-label null"),
    _t("clusters_protocol", "tables/clusters_protocol.csv",
       "layer curves k n_heads n_types ari null_q95 p_value clusters", "03_drllc",
       "claim 3 by the paper's protocol: Euclidean k-means of the wr and code dr curves, four types"),
    _t("timing_resolution", "tables/timing_resolution.csv",
       "measure first last difference resolved smallest_resolvable", "03_drllc",
       "whether the induction heads' formation times are resolved by the grid and the noise"),
    _t("noise_budget_timing", "tables/noise_budget_timing.csv",
       "claim difference signal noise ratio share_above_2se samples_needed seconds_now seconds_needed",
       "03_drllc", "claim 5: checkpoint-to-checkpoint changes of the induction heads' curves against their errors"),
    # 04_multigram_circuit
    _t("composition_L2", "tables/composition_L2.parquet", "step variant mode src dst score", "04_multigram_circuit",
       "Q-, K-, V-composition of every layer-0 head into every layer-1 head at every checkpoint (raw, LN-folded)"),
    _t("composition_turnaround", "tables/composition_turnaround.csv",
       "src dst min_step min_value fall recovery turns stage candidates", "04_multigram_circuit",
       "K-composition minimum and recovery per (layer-0 multigram, layer-1 multigram) pair"),
    _t("composition_coupling", "tables/composition_coupling.csv",
       "from_step across_receivers across_senders ratio candidates", "04_multigram_circuit",
       "spread of late K-composition across receivers vs across senders"),
    _t("l1_gap_heads", "tables/l1_gap_heads.csv", "component step wr dr data gap", "04_multigram_circuit",
       "wrLLC, drLLC with the L1 model as data source, and their relative gap per head"),
    _t("l1_gap_by_type", "tables/l1_gap_by_type.csv",
       "group n_heads boundary gap_before gap_after increase candidates", "04_multigram_circuit",
       "mean relative gap per head group before and after the previous-token boundary"),
    _t("path_patching", "tables/path_patching.csv", "step receiver variant condition loss_close loss_all candidates",
       "04_multigram_circuit", "bracket losses: clean, receiver ablated, senders ablated on the path only"),
    _t("multigram_migration", "tables/multigram_migration.csv", "src mid_step n_mid kept n_moved top_dst",
       "04_multigram_circuit", "where a layer-0 head's multigrams at mid-training are held at the end"),
    # 05_curvature_ablation
    _t("hessian_trace_L2", "tables/hessian_trace_L2.csv", CURVATURE_COLUMNS, "05_curvature_ablation",
       "Hutchinson traces of the loss Hessian per head and for the full model, on training data and held-out code"),
    _t("fisher_trace_L2", "tables/fisher_trace_L2.csv", CURVATURE_COLUMNS, "05_curvature_ablation",
       "the full model's Fisher information trace on its own samples (Hutchinson and gradient identity)"),
    _t("hessian_rank_L2", "tables/hessian_rank_L2.csv", (*CURVATURE_COLUMNS, "covers"), "05_curvature_ablation",
       "the full model's Hessian rank (fixed and adaptive Chebyshev counts) and the ends of its spectrum"),
    _t("ablation_L2", "tables/ablation_L2.csv", "step component kind clean ablated score se", "05_curvature_ablation",
       "loss increase under zero, mean and resample ablation of each head alone"),
    _t("trace_precision", "tables/trace_precision.csv", "data scope probes windows median_se median_rel_se",
       "05_curvature_ablation", "standard error of the Hutchinson traces at the chosen settings"),
    _t("measure_agreement", "tables/measure_agreement.csv", "measure reference scope rho p_value n_heads layers_only",
       "05_curvature_ablation", "Spearman's rho between final per-head values of each measure and the wrLLC"),
    _t("measure_tracking", "tables/measure_tracking.csv", "measure component rho n_steps null_median null_max",
       "05_curvature_ablation", "per-head correlation across checkpoints of each measure with the head's wrLLC"),
    _t("measure_critical_points", "tables/measure_critical_points.csv",
       "measure component step kind nearest_reference offset_decades", "05_curvature_ablation",
       "critical points of each measure's curves and their distance to the wrLLC's"),
    # written by the package
    _t("llc_estimates", "tables/llc_estimates.parquet", ESTIMATE_COLUMNS, "rllc",
       "every cached LLC estimate of the run (rllc.estimate.records.collect)"),
    # 06_seeds (the claim tables of each seed also go, under the names above, to <run>/seeds/<model>/)
    _t("seed_training", "tables/seed_training.csv", "model seed steps seconds test_loss threads", "06_seeds",
       "the other seeds' training: steps, minutes spent in this run, final test loss"),
    _t("seed_head_types", "tables/seed_head_types.csv",
       "model seed component type previous_token current_token induction final_wrllc", "06_seeds",
       "every seed's head types (scores at the last checkpoint, tokens in context) and final wrLLC"),
    _t("wrllc_seeds", "tables/wrllc_seeds.csv", ESTIMATE_COLUMNS, "06_seeds",
       "wrLLC of every head and the full-model LLC of every seed at the per-head checkpoints"),
    _t("drllc_seeds", "tables/drllc_seeds.csv", ESTIMATE_COLUMNS, "06_seeds",
       "code drLLC of every head of every seed at the late per-head checkpoints"),
    _t("cluster_transfer", "tables/cluster_transfer.csv",
       "run layer algorithm k n_heads ari null_q95 p_value n_exceptions n_types matches_types n_ref_types",
       "06_seeds", "clusters fitted on the run's own seed, other seeds' heads assigned: ARI against their four types"),
    _t("cluster_transfer_heads", "tables/cluster_transfer_heads.csv",
       "run layer algorithm k component cluster type cluster_type exception", "06_seeds",
       "each other-seed head's assigned cluster and whether its type differs from the cluster's"),
    _t("claims_per_seed", "tables/claims_per_seed.csv", "model seed claim status value threshold", "06_seeds",
       "claims 1-5 on each seed, one protocol for all"),
    _t("claims_by_seed", "tables/claims_by_seed.csv",
       "claim n_seeds n_pass n_decided holds pass_seeds fail_seeds undefined_seeds main_scorecard", "06_seeds",
       "on how many seeds each claim holds"),
    _t("claims_by_type_rule", "tables/claims_by_type_rule.csv", "claim rule status value", "rllc",
       "the type-dependent claims (3, 5, 6, 7, 10) under the type rule and under rule v1, from the same estimates"),
    _t("claims", "claims.csv", "claim status value threshold notebook", "rllc",
       "the claims scorecard (rllc.report.claims)"),
)

TABLES: dict[str, Table] = {t.name: t for t in _ALL}


class MissingTable(LookupError):
    """A registered table has not been written yet (its notebook has not run)."""

    def __init__(self, table: Table) -> None:
        super().__init__(f"{table.file} has not been written yet; run notebook {table.notebook}")
        self.table = table
        self.file = Path(table.file).name


def spec(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no table named {name!r} in the registry (rllc.report.tables); "
                       f"registered: {sorted(TABLES)}") from None


def path(run: Run | Path, name: str) -> Path:
    """Where table ``name`` of a run (or of a folder of tables: a seed's view) is."""
    return folder(run) / spec(name).file


def exists(run: Run | Path, name: str) -> bool:
    return path(run, name).exists()


def write(run: Run | Path, name: str, df: pd.DataFrame) -> Path:
    """Write table ``name`` of a run (atomically), refusing one that lacks a declared column."""
    t = spec(name)
    missing = [c for c in t.columns if c not in df.columns]
    if missing:
        raise ValueError(f"table {name!r} lacks column(s) {missing}; the registry declares {list(t.columns)}")
    return write_table(df, path(run, name))


def read(run: Run | Path, name: str) -> pd.DataFrame:
    """Table ``name`` of a run; :class:`MissingTable` if it has not been written yet."""
    p = path(run, name)
    if not p.exists():
        raise MissingTable(spec(name))
    return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)


def read_optional(run: Run | Path, name: str) -> pd.DataFrame | None:
    """Table ``name``, or None when it has not been written yet."""
    try:
        return read(run, name)
    except MissingTable:
        return None
