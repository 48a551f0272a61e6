"""Typed configuration: one profile (ci, cpu, paper) resolves to one ``Config``.

A profile file ``profiles/<name>.yaml`` holds ``profile: <name>`` and a ``config:`` mapping.
The same file is a valid Papermill parameters file: every notebook declares the parameters
``profile`` and ``config`` (overrides deep-merged over the named profile) and ``run_dir``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import paths
from .model_name import MODEL_NAMES, ModelName, model_base

T = TypeVar("T")

@dataclass(frozen=True)
class CorpusConfig:
    """Which registry sources make up the training mixture and the held-out domains."""

    train_sources: tuple[str, ...] = (
        "shakespeare", "kjv", "sotu", "moby_dick", "email", "python_docs",
        "python_stdlib", "go_stdlib",
    )
    heldout_sources: tuple[str, ...] = (
        "python_tests", "rust_stdlib", "bbc_news", "brown_learned", "brown_news", "brown_fiction",
    )
    max_bytes_per_source: int | None = None  # cap on each training source (documents by hash)
    # per-source caps that override max_bytes_per_source (e.g. to weight code in the mixture)
    source_max_bytes: dict[str, int] = field(default_factory=dict)
    heldout_max_bytes: int | None = None  # cap on each held-out domain
    test_fraction: float = 0.02  # documents of the training mixture kept aside for test loss
    hub_dataset: str | None = None  # online only: a hub dataset name replaces the mixture
    hub_text_column: str = "text"
    hub_max_documents: int | None = None


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 5000
    min_frequency: int = 2
    train_bytes: int | None = 20_000_000  # bytes of the training mixture the BPE is fit on


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the attention-only transformers; L0/L1/L2 differ only in n_layers."""

    d_model: int = 256
    d_head: int = 32
    n_heads: int = 8
    n_ctx: int = 1024
    normalization_type: str = "LN"
    positional_embedding_type: str = "shortformer"


@dataclass(frozen=True)
class CheckpointRange:
    start: int
    stop: int  # inclusive
    every: int


@dataclass(frozen=True)
class TrainConfig:
    steps: dict[str, int] = field(default_factory=lambda: {"L0": 50_000, "L1": 50_000, "L2": 50_000})
    batch_size: int = 100
    lr: float = 1e-3
    warmup_steps: int = 0  # linear warm-up to lr over this many steps (the paper: none)
    data_seed: int = 0  # the batch order's seed (0: the run's seed); other-seed models keep the run's order
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    checkpoints: tuple[CheckpointRange, ...] = (
        CheckpointRange(0, 100, 100),
        CheckpointRange(200, 10_000, 200),
        CheckpointRange(10_400, 20_000, 400),
        CheckpointRange(21_000, 50_000, 1_000),
    )
    resume_every: int = 500  # extra resume points between checkpoints (steps)
    log_every: int = 10
    eval_batches: int = 4  # batches of the held-out test split evaluated at each checkpoint
    device: str = "auto"  # "auto" picks CUDA when present
    deterministic: bool = True  # deterministic kernels: bit-identical reruns and resumes on CPU
    # torch threads of a training or estimating process, fixed by the profile, not the machine: float
    # sums depend on the thread count (rllc.numerics; a model of another seed trained in 06 gets
    # threads // seeds.processes)
    threads: int = 2


@dataclass(frozen=True)
class ScoreConfig:
    """Behavioural head scores (previous-token, current-token, induction) and the ICL score."""

    n_samples: int = 1000
    min_len: int = 16
    max_len: int = 64
    induction_len: int = 64  # length of the random half that is repeated
    icl_early: int = 50  # token positions at the paper's n_ctx of 1024 (scaled to n_ctx)
    icl_late: int = 500
    icl_halfwidth: int = 0  # average each position's loss with this many neighbours on each side
    icl_batches: int = 4
    batch_size: int = 100
    # the previous- and current-token shares on text: held-out windows of the training mixture, the
    # mean over every query position from text_min_pos on (rllc.analysis.head_types states the rule)
    text_windows: int = 64
    text_min_pos: int = 8


@dataclass(frozen=True)
class SamplerConfig:
    """SGLD settings for LLC estimates (defaults: the rLLC paper's, Appendix F.2).

    Update: w <- w - (epsilon/2) * mask * (nbeta * grad L_batch(w) + gamma * (w - w*))
                  + sqrt(epsilon) * mask * N(0, I);
    estimate: nbeta * (mean loss over draws and chains - L(w*)).

    ``reference`` says where L(w*) comes from. ``"init"`` (devinterp's convention and the
    default): the mean loss at w* over the first ``init_loss_batches`` batches. ``"paired"``: the
    loss at w* on the *same batch* as each draw, so the estimate is nbeta * mean(L_b(w_t) - L_b(w*)).
    Both estimate the same quantity; pairing removes the batch-to-batch variation of the loss,
    which otherwise swamps small components (one head moves the loss by ~1e-3 nats, while batch
    losses vary by ~1e-1) and is shared by every estimate that sees the same batches.

    ``batch_order`` says which batches each chain sees (below); with ``"per_chain"`` (the default)
    each chain has its own paired reference (or its own L(w*) under ``"init"``).
    """

    epsilon: float = 1e-3  # step size
    gamma: float = 200.0  # localization strength
    nbeta: float = 30.0  # inverse temperature n*beta
    chains: int = 4
    draws: int = 200
    burnin: int = 0  # steps before the first draw (not averaged)
    steps_between_draws: int = 1
    batch_size: int = 32
    init_loss_batches: int = 16  # batches for L(w*)
    seed: int = 100  # chain c draws its noise from seed + c; batches come from seed
    # diagnostics: a chain is "diverged" when its loss is not finite or its late mean runs more
    # than diverge_margin nats above L(w*) (None: a chain whose implied LLC exceeds the
    # component's weight count d, twice the regular bound d/2); "below_init" when its late mean sits
    # significantly below L(w*), a sign that w* is not a local minimum.
    diverge_margin: float | None = None
    reference: str = "init"  # "init" or "paired" (see above)
    # "per_chain": chain c sees its own batch order (a permutation under seed + c), so chains are
    # independent replicates of the whole estimate and the standard error across them covers the
    # batch order as well as the chain noise. "shared": every chain sees the same batches (the
    # order of seed), devinterp's convention; chains then differ only by their noise, and an
    # offset between the draws' batches and the reference's is shared by all chains and invisible
    # in their spread (under "init" it can exceed the reported error ten-fold).
    batch_order: str = "per_chain"


@dataclass(frozen=True)
class LLCConfig:
    """How the LLC notebooks spend their budget (the sampler itself is ``SamplerConfig``)."""

    checkpoint_stride: int = 1  # estimate at every k-th checkpoint of the schedule (first and last always)
    validation_scale: float = 1.0  # fraction of the known-answer tests' draws (1 = the tested settings)
    calibration_epsilons: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    calibration_nbetas: tuple[float, ...] = (10.0, 30.0, 100.0)
    calibration_draws: int = 200
    stage_sigma: float = 1.5  # smoothing (in checkpoints) before looking for critical points
    head_checkpoints: int = 0  # per-head (rLLC) sweeps: this many checkpoints spread over the strided ones (0: all)
    # per-head drLLCs (03, 06): held-out code. The paper uses one code set; claims 3 and 4 and 06 read
    # only the first. Add "rust_stdlib" (a language the model never saw) to see a second one.
    head_dr_data: tuple[str, ...] = ("python_tests",)
    workers: int = 1  # sweeps on CPU: estimates run in this many processes (threads shared among them)
    rerun_component: str = "1:0"  # 01: the estimate rerun with several seeds to check its standard error
    rerun_seeds: int = 8  # 01: how many reruns (per reference and batch order)
    curve_stride: int = 0  # 01's full-model curve and its stages: every k-th checkpoint (0: checkpoint_stride)
    curve_chains: int = 0  # 01's full-model curve: chains per estimate (0: the sampler's)
    curve_draws: int = 0  # 01's full-model curve: draws per chain (0: the sampler's)
    precision_chains: tuple[int, ...] = ()  # 01's precision/time trade-off at the last checkpoint (empty: skip)
    precision_draws: tuple[int, ...] = ()  # ... every chains x draws combination of these
    precision_components: tuple[str, ...] = ("full", "1:0")  # ... for these components
    warmup_controls: tuple[int, ...] = ()  # 01: retrain L2 with these warm-up lengths to test the early LLC peak
    warmup_control_steps: int = 0  # ... for this many steps (checkpoints: the profile's schedule up to there)


@dataclass(frozen=True)
class ClassifyConfig:
    """Head classification by tokens in context, and clustering of rLLC curves (notebook 02)."""

    tic_samples: int = 2000  # held-in windows searched for each head's tokens in context (paper: 100k)
    tic_k: int = 200  # tokens in context kept per head (paper: 1k)
    batch_size: int = 32
    max_k: int = 6  # clusterings for k = 2 .. max_k (at most the heads per layer minus one)
    viewer_examples: int = 40  # tokens in context shown per head in the HTML viewer


@dataclass(frozen=True)
class CircuitConfig:
    """The multigram circuit (notebook 04)."""

    generator: str = "model:L1"  # the data source of the drLLC of Figure 5 (eq. 11): a model of the run
    bracket_windows: int = 200  # windows of each bracket variant for path patching
    coupling_from: float = 0.35  # "late in training" for the coupling statistic (the paper: 17.5k of 50k steps)
    recovery_fraction: float = 0.2  # a K-composition minimum is a turnaround when this much of the fall is regained
    smoothing: float = 1.0  # Gaussian smoothing (in checkpoints) of composition curves before finding minima


@dataclass(frozen=True)
class CurvatureConfig:
    """Hessian trace, Fisher trace, Hessian rank and ablation scores (notebook 05; paper App. D, E)."""

    curve_checkpoints: int = 0  # per-head curves: this many of the per-head (02) checkpoints (0: all of them)
    trace_windows: int = 100  # windows ("dataset samples") the Hessian is taken on (the paper: 100)
    trace_probes: int = 50  # Hutchinson probes per trace (the paper: 50)
    trace_data: tuple[str, ...] = ("train", "python_tests")  # the training distribution, held-out code
    batch_size: int = 8  # windows per Hessian-vector product chunk (memory, not numbers)
    fim_samples: int = 30  # sequences sampled from the model at each checkpoint (the paper: 30)
    fim_probes: int = 5  # the paper: 5
    fim_temperature: float = 1.0
    fim_checkpoints: int = 0  # the Fisher trace at this many of the curves' checkpoints (0: all)
    rank_windows: int = 3  # the paper: 3 dataset samples, 1 probe, degree 100
    rank_probes: int = 1
    rank_degree: int = 100
    rank_interval: tuple[float, float] = (-1000.0, 6000.0)  # the fixed method's range (the paper's)
    rank_threshold: float = 500.0  # the fixed method's threshold (the paper's)
    rank_fraction: float = 500.0 / 6000.0  # adaptive: threshold as a fraction of |lambda|max (reconstructed)
    rank_margin: float = 0.05  # adaptive: the interval is +-(1 + margin) |lambda|max
    rank_checkpoints: int = 0  # the rank at this many of the curves' checkpoints (0: all)
    lanczos_tol: float = 1e-2  # relative tolerance of the extreme eigenvalues
    lanczos_vectors: int = 20  # Lanczos vectors of each extreme-eigenvalue search (ARPACK's ncv; >= 2)
    ablation_windows: int = 100  # held-out windows for ablation scores
    ablation_batch: int = 16  # resampling draws from the other windows of a batch of this size
    seed: int = 0  # probes and windows


@dataclass(frozen=True)
class SeedsConfig:
    """Other initialisation seeds of L2 (notebook 06; paper App. G): trained like the run's own
    model with the run's batch order, evaluated with one protocol for every seed."""

    others: tuple[int, ...] = ()  # initialisation seeds besides the run's (the paper: three more runs)
    processes: int = 1  # train the seeds in this many processes at once (threads shared among them)
    dr_from: float = 0.0  # code drLLC per head at the per-head checkpoints from this fraction of training on


@dataclass(frozen=True)
class Config:
    profile: str = "paper"
    seed: int = 1
    # notebooks assert the paper's phenomena (previous-token and induction heads, falling ICL
    # score) only where the profile is meant to show them
    expect_phenomena: bool = True
    corpus: CorpusConfig = CorpusConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    scores: ScoreConfig = ScoreConfig()
    sampler: SamplerConfig = SamplerConfig()
    llc: LLCConfig = LLCConfig()
    classify: ClassifyConfig = ClassifyConfig()
    circuit: CircuitConfig = CircuitConfig()
    curvature: CurvatureConfig = CurvatureConfig()
    seeds: SeedsConfig = SeedsConfig()

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def checkpoint_steps(self, model_name: str) -> list[int]:
        return checkpoint_schedule(self.train.checkpoints, self.train.steps[model_base(model_name)])


def seeded(cfg: Config, name: str) -> Config:
    """The config that model ``name`` is trained with: for "L2-s<k>" the run's config with seed k
    for the initialisation and the run's own batch order (``train.data_seed``); else ``cfg``."""
    k = ModelName.parse(name).seed
    if k is None:
        return cfg
    train = dataclasses.replace(cfg.train, data_seed=cfg.train.data_seed or cfg.seed)
    return dataclasses.replace(cfg, seed=k, train=train)


def data_seed(cfg: Config) -> int:
    """The seed of the training batch order."""
    return cfg.train.data_seed or cfg.seed


def checkpoint_schedule(ranges: tuple[CheckpointRange, ...], total_steps: int) -> list[int]:
    """Steps at which weights are kept: the ranges clipped to the run, plus 0 and the last step."""
    steps = {0, total_steps}
    for r in ranges:
        if r.every <= 0 or r.stop < r.start:
            raise ValueError(f"bad checkpoint range {r}")
        steps.update(s for s in range(r.start, r.stop + 1, r.every) if s <= total_steps)
    return sorted(steps)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build a (nested) dataclass from plain data, rejecting unknown keys with a clear error."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {_shown(data)}")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise KeyError(f"{where}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = _default(known[name])
        if name == "checkpoints":
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{where}.checkpoints: expected a list of {{start, stop, every}}, got {_shown(value)}")
            value = tuple(
                v if isinstance(v, CheckpointRange) else _build(CheckpointRange, v, f"{where}.checkpoints")
                for v in value
            )
        elif dataclasses.is_dataclass(default):
            value = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{where}.{name}: expected a list, got {_shown(value)}")
            value = tuple(value)
        elif name == "steps":
            if not isinstance(value, dict) or not all(_is_int(v) for v in value.values()):
                raise ValueError(f"{where}.steps: expected a mapping of model to an integer step count "
                                 f"(e.g. {{L2: 24000}}), got {_shown(value)}")
            bad = sorted(set(value) - set(MODEL_NAMES))
            if bad:
                raise KeyError(f"{where}.steps: unknown model(s) {bad}; valid: {list(MODEL_NAMES)}")
            value = {**default, **{k: int(v) for k, v in value.items()}}
        else:
            _check_scalar(value, default, "None" in str(known[name].type), f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scalar(value: Any, default: Any, optional: bool, where: str) -> None:
    """A setting whose default is a plain bool, int, float, str or mapping takes a value of that
    kind (an int where a float is expected; None only where the setting is optional); anything
    else is refused with one line rather than failing later in a notebook."""
    if default is None or (value is None and optional):
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = _is_int(value), "an integer"
    elif isinstance(default, float):
        ok, kind = _is_int(value) or isinstance(value, float), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, dict):
        ok, kind = isinstance(value, dict), "a mapping"
    else:
        return
    if not ok:
        raise ValueError(f"{where}: expected {kind}, got {_shown(value)}")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_path(profile: str | Path) -> Path:
    """A profile name (``ci``, ``cpu``, ``paper``) or a path to a YAML file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise FileNotFoundError(f"profile file {candidate} does not exist")
        return candidate
    path = paths.PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in paths.PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"unknown profile {profile!r}; available: {available}")
    return path


def profile_settings(profile: str | Path, seen: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """(name, ``config`` mapping) of a profile file. A profile may start from another with
    ``extends: <profile>`` (a name, or a YAML path relative to the file): its ``config`` is then
    merged over that profile's (lists replace). Bad files raise one-line errors naming the fix."""
    path = profile_path(profile).resolve()
    if str(path) in seen:
        chain = " -> ".join(Path(p).name for p in (*seen, path))
        raise ValueError(f"profile {path.name} extends itself through a cycle: {chain}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"profile {path}: YAML syntax error{where}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"profile {path}: expected a mapping with 'profile', 'extends' and 'config' keys")
    name = raw.get("profile", path.stem)
    settings = raw.get("config", {}) or {}
    base = raw.get("extends")
    if base:
        base_ref = Path(str(base))
        if base_ref.suffix in (".yaml", ".yml") and not base_ref.is_absolute():
            base_ref = path.parent / base_ref
        try:
            base_settings = profile_settings(base_ref if base_ref.suffix in (".yaml", ".yml") else str(base),
                                             (*seen, str(path)))[1]
        except FileNotFoundError:
            available = sorted(p.stem for p in paths.PROFILES_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"profile {path}: extends: {base!r} is neither a profile ({', '.join(available)}) "
                                    f"nor an existing YAML file") from None
        settings = deep_merge(base_settings, settings)
    return name, settings


def load_config(profile: str | Path = "cpu", overrides: dict[str, Any] | None = None) -> Config:
    """Resolve a profile (and optional overrides of its ``config`` mapping) to a ``Config``."""
    name, settings = profile_settings(profile)
    return from_dict(name, deep_merge(settings, overrides or {}))


def from_dict(profile: str, settings: dict[str, Any]) -> Config:
    """A ``Config`` from plain settings (a profile's ``config`` mapping, or ``Config.to_dict()``),
    refused with a one-line error when a notebook could not work with it (:func:`validate`)."""
    settings = {k: v for k, v in settings.items() if k != "profile"}
    return validate(_build(Config, {**settings, "profile": profile}, where=f"profile {profile}"))


# 06 clusters and transfers wrLLC curves over at least this many per-head checkpoints after step 0
MIN_HEAD_CHECKPOINTS_AFTER_INIT = 3


def validate(cfg: Config) -> Config:
    """``cfg``, or a ValueError naming the first setting no notebook can work with and its bound."""
    s, n_ctx, where = cfg.scores, cfg.model.n_ctx, f"profile {cfg.profile}"
    if not 2 <= s.min_len <= s.max_len:
        raise ValueError(f"{where}: scores.min_len {s.min_len} must lie in 2..scores.max_len ({s.max_len})")
    if s.max_len > n_ctx:
        raise ValueError(f"{where}: scores.max_len {s.max_len} does not fit model.n_ctx {n_ctx}")
    if 1 + 2 * s.induction_len > n_ctx:
        raise ValueError(f"{where}: scores.induction_len {s.induction_len} needs model.n_ctx >= "
                         f"{1 + 2 * s.induction_len} (BOS + the sequence twice); model.n_ctx is {n_ctx}")
    if not 1 <= s.text_min_pos < n_ctx:
        raise ValueError(f"{where}: scores.text_min_pos {s.text_min_pos} must lie in 1..{n_ctx - 1} (model.n_ctx - 1)")
    minimum = MIN_HEAD_CHECKPOINTS_AFTER_INIT + 1
    if 0 < cfg.llc.head_checkpoints < minimum:
        raise ValueError(f"{where}: llc.head_checkpoints {cfg.llc.head_checkpoints} is below its minimum of {minimum} "
                         f"(06 needs {MIN_HEAD_CHECKPOINTS_AFTER_INIT} after step 0; 0 means every checkpoint)")
    if cfg.curvature.lanczos_vectors < 2:
        raise ValueError(f"{where}: curvature.lanczos_vectors {cfg.curvature.lanczos_vectors} must be at least 2 "
                         "(Lanczos needs one vector more than the one eigenvalue it seeks)")
    return cfg


def config_hash(obj: Any, n: int = 10) -> str:
    """Short stable hash of plain data or a dataclass (keys of caches and model directories)."""
    if dataclasses.is_dataclass(obj):
        obj = _to_plain(dataclasses.asdict(obj))
    blob = json.dumps(_to_plain(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
