import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rllc import config, io, run, train
from rllc.model import checkpoints
from rllc.train import BatchOrder


def _weights(store: checkpoints.CheckpointStore, step: int) -> dict[str, torch.Tensor]:
    return store.load_weights(step)


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_batch_order_is_a_pure_function_of_seed_and_step():
    a, b = BatchOrder(100, 8, seed=1), BatchOrder(100, 8, seed=1)
    seq = [a(s) for s in range(30)]
    assert all(torch.equal(b(s), seq[s]) for s in reversed(range(30)))  # any order of queries
    epoch0 = torch.cat(seq[:12])
    assert len(set(epoch0.tolist())) == 96  # no window twice within an epoch
    assert not torch.equal(BatchOrder(100, 8, seed=2)(0), seq[0])


def test_training_is_deterministic(tiny_cfg, ci_prepared, tmp_path):
    r1 = train.train_model(tiny_cfg, "L2", tmp_path / "a", progress=False)
    r2 = train.train_model(tiny_cfg, "L2", tmp_path / "b", progress=False)
    for step in r1.store.steps():
        _assert_identical(_weights(r1.store, step), _weights(r2.store, step))
    assert not torch.equal(_weights(r1.store, 0)["blocks.0.attn.W_Q"], _weights(r1.store, 24)["blocks.0.attn.W_Q"])
    assert r1.log.equals(r2.log)


def test_interrupted_training_resumes_to_identical_weights(tiny_cfg, ci_prepared, tmp_path):
    ref = train.train_model(tiny_cfg, "L2", tmp_path / "ref", progress=False)

    def interrupt(step: int) -> None:
        if step == 11:  # between resume points (every 4) and checkpoints (every 8)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_model(tiny_cfg, "L2", tmp_path / "cut", progress=False, on_step=interrupt)
    store = checkpoints.CheckpointStore.for_model(tmp_path / "cut", "L2")
    assert store.steps() == [0, 8] and store.load_resume()["step"] == 8
    resumed = train.train_model(tiny_cfg, "L2", tmp_path / "cut", progress=False)
    assert resumed.store.steps() == ref.store.steps()
    for step in ref.store.steps():
        _assert_identical(_weights(ref.store, step), _weights(resumed.store, step))

    def train_rows(log: pd.DataFrame) -> pd.DataFrame:
        return log[log["split"] == "train"].reset_index(drop=True)

    assert train_rows(resumed.log).equals(train_rows(ref.log))


def test_a_longer_run_starts_from_a_shorter_one(tiny_cfg, ci_prepared, tmp_path):
    """cpu-long from cpu: the same weights trained further; starting from the short run's
    checkpoints gives what training the long run from scratch gives, bit for bit."""
    from rllc.config import load_config

    longer = load_config("ci", {"train": {"steps": {"L0": 12, "L1": 12, "L2": 40},
                                          "checkpoints": [{"start": 0, "stop": 40, "every": 8}],
                                          "resume_every": 4, "log_every": 2}})
    train.train_model(tiny_cfg, "L2", tmp_path / "short", progress=False)
    ref = train.train_model(longer, "L2", tmp_path / "ref", progress=False)
    assert train.start_from(longer, "L2", tmp_path / "short", tmp_path / "long") == 24
    resumed = train.train_model(longer, "L2", tmp_path / "long", progress=False)
    assert resumed.store.steps() == ref.store.steps() == [0, 8, 16, 24, 32, 40]
    for step in ref.store.steps():
        _assert_identical(_weights(ref.store, step), _weights(resumed.store, step))
    with pytest.raises(FileExistsError, match="already has checkpoints"):
        train.start_from(longer, "L2", tmp_path / "short", tmp_path / "long")
    other = load_config("ci", {"seed": 2, "train": {"steps": {"L0": 12, "L1": 12, "L2": 40}}})
    with pytest.raises(checkpoints.IdentityMismatch):
        train.start_from(other, "L2", tmp_path / "short", tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        train.start_from(longer, "L2", tmp_path / "nowhere", tmp_path / "other")


def _train_cmd(profile_yaml: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "rllc.cli", "train", "--profile", str(profile_yaml), "--run-dir", str(run),
            "--models", "L2", "--quiet"]


@pytest.mark.slow
def test_killed_process_resumes_to_identical_weights(ci_prepared, tmp_path):
    """SIGKILL a real training process midway, restart it, and compare with an uninterrupted run."""
    from rllc import paths
    raw = yaml.safe_load((paths.PROFILES_DIR / "ci.yaml").read_text())
    raw["config"]["train"].update({"steps": {"L0": 10, "L1": 10, "L2": 300}, "resume_every": 10,
                                   "checkpoints": [{"start": 0, "stop": 300, "every": 100}]})
    prof = tmp_path / "killtest.yaml"
    prof.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "RLLC_NO_REEXEC": "1"}
    subprocess.run(_train_cmd(prof, tmp_path / "ref"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_train_cmd(prof, tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    store = checkpoints.CheckpointStore.for_model(tmp_path / "cut", "L2")
    deadline = time.time() + 120
    while time.time() < deadline and 100 not in store.steps():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 300 not in store.steps(), "the run finished before it could be killed"
    subprocess.run(_train_cmd(prof, tmp_path / "cut"), check=True, env=env, capture_output=True)
    ref = checkpoints.CheckpointStore.for_model(tmp_path / "ref", "L2")
    assert store.steps() == ref.steps() == [0, 100, 200, 300]
    for step in ref.steps():
        _assert_identical(ref.load_weights(step), store.load_weights(step))
    assert not list(store.root.rglob("*.tmp")), "a temporary file was left behind"


def test_run_refuses_a_model_trained_with_other_settings(tiny_cfg, ci_prepared, tmp_path):
    from rllc import config
    train.train_model(tiny_cfg, "L0", tmp_path, progress=False)
    other = config.load_config("ci", {"train": {"steps": {"L0": 12}, "lr": 0.01}})
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(RuntimeError, match="other settings"):
        train.train_model(other, "L0", tmp_path, progress=False)
    assert (tmp_path / "config.yaml").read_text() == before  # refused before anything was written


def test_load_model_returns_any_checkpoint(tiny_cfg, ci_prepared, tmp_path):
    train.train_model(tiny_cfg, "L1", tmp_path, progress=False)
    m8 = run.load_model(tmp_path, "L1", 8)
    last = run.load_model(tmp_path, "L1", "last")
    assert m8.cfg.n_layers == 1 and not torch.equal(m8.W_Q, last.W_Q)
    with pytest.raises(FileNotFoundError, match="available"):
        run.load_model(tmp_path, "L1", 5)
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        run.load_model(tmp_path / "nowhere", "L1")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"a": 1})

    def broken(p: Path) -> None:
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        io.atomic_write(target, broken)
    assert io.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_learning_rate_warm_up_then_constant(tiny_cfg):
    import dataclasses

    assert train.learning_rate(tiny_cfg, 0) == tiny_cfg.train.lr  # the paper: no warm-up
    warm = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, lr=0.01, warmup_steps=10))
    lrs = [train.learning_rate(warm, s) for s in range(15)]
    assert lrs[0] == pytest.approx(0.001) and lrs[4] == pytest.approx(0.005)
    assert lrs[9:] == [0.01] * 6
    # the warm-up is part of the run's identity: a run cannot resume under another schedule
    assert run.identity(warm, "L2") != run.identity(
        dataclasses.replace(warm, train=dataclasses.replace(warm.train, warmup_steps=0)), "L2")


def test_resume_with_warm_up_is_identical(tiny_cfg, ci_prepared, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, lr=0.005, warmup_steps=16))
    ref = train.train_model(cfg, "L2", tmp_path / "ref", progress=False)

    def interrupt(step: int) -> None:
        if step == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_model(cfg, "L2", tmp_path / "cut", progress=False, on_step=interrupt)
    resumed = train.train_model(cfg, "L2", tmp_path / "cut", progress=False)
    for step in ref.store.steps():
        _assert_identical(_weights(ref.store, step), _weights(resumed.store, step))


def test_another_seed_is_its_own_model_with_the_runs_batch_order(tiny_cfg, tmp_path):
    from rllc.config import seeded
    from rllc.model.build import build_model
    from rllc.model_name import model_base, seeded_name
    from rllc.run import identity, load_model
    from rllc.train import train_model

    assert seeded_name("L2", tiny_cfg.seed, tiny_cfg.seed) == "L2" and seeded_name("L2", 7, 1) == "L2-s7"
    assert model_base("L2-s7") == "L2"
    for bad in ("L3", "L2-s", "L2-sx", "L2s2"):
        with pytest.raises(KeyError, match="unknown model"):
            model_base(bad)
    # the run's own models keep their identity (no data_seed entry); another seed records both seeds
    own = identity(tiny_cfg, "L2")
    assert "data_seed" not in own and own["seed"] == tiny_cfg.seed
    other = identity(tiny_cfg, "L2-s7")
    assert other["seed"] == 7 and other["data_seed"] == tiny_cfg.seed and other["model"] == "L2"
    # initialisation: the same as a run whose seed is 7 (the oracle: the plain config)
    a = build_model(tiny_cfg, "L2-s7")
    b = build_model(seeded(tiny_cfg, "L2-s7"), "L2")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.W_Q, build_model(tiny_cfg, "L2").W_Q)
    # its own store; the weights are those of a seed-7 run that keeps the run's batch order
    # (train.data_seed), and differ from a seed-7 run with its own order
    r1 = train_model(tiny_cfg, "L2-s7", tmp_path / "a", progress=False)
    assert r1.store.root == tmp_path / "a" / "models" / "L2-s7"
    base = tiny_cfg.to_dict()
    same_order = config.from_dict("ci", {**base, "seed": 7, "train": {**base["train"], "data_seed": tiny_cfg.seed}})
    own_order = config.from_dict("ci", {**base, "seed": 7})
    train_model(same_order, "L2", tmp_path / "b", progress=False)
    train_model(own_order, "L2", tmp_path / "c", progress=False)
    m1, m2, m3 = (load_model(tmp_path / d, n) for d, n in (("a", "L2-s7"), ("b", "L2"), ("c", "L2")))
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert not torch.equal(m1.W_Q, m3.W_Q)


def test_models_trained_side_by_side_match_those_trained_one_by_one(tiny_cfg, ci_prepared, tmp_path):
    names = ["L2-s2", "L2-s3"]
    with pytest.raises(ValueError, match="processes must be >= 1"):
        train.train_models(tiny_cfg, names, tmp_path / "par", processes=0)
    out = train.train_models(tiny_cfg, names, tmp_path / "par", processes=2, progress=False)
    assert [o.name for o in out] == names and all(o.steps == 24 for o in out)
    assert all(o.threads == max(1, tiny_cfg.train.threads // tiny_cfg.seeds.processes) for o in out)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # this process's own count does not matter: the profile sets it
    try:
        for name in names:
            ref = train.train_model(tiny_cfg, name, tmp_path / "seq", progress=False)
            par = checkpoints.CheckpointStore.for_model(tmp_path / "par", name)
            assert par.steps() == ref.store.steps()
            for step in ref.store.steps():
                _assert_identical(_weights(ref.store, step), _weights(par, step))
    finally:
        torch.set_num_threads(threads)
    again = train.train_models(tiny_cfg, names, tmp_path / "par", processes=2, progress=False)
    assert [(a.steps, a.seconds) for a in again] == [(o.steps, o.seconds) for o in out]  # loaded, not retrained
