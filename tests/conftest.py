from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from _models import markov_data, tiny_model
from transformer_lens import HookedTransformer

from rllc import config
from rllc.data import tokens as tokens_mod

warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")

# Under pytest-xdist each worker takes an equal share of the cores (the tests' models are small:
# n workers with one thread each get through more than one process with every thread). A test
# that compares results computed in this process sets its own thread count where it matters.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="session")
def ci_cfg() -> config.Config:
    return config.load_config("ci")


@pytest.fixture(scope="session")
def ci_prepared(ci_cfg: config.Config) -> tokens_mod.Prepared:
    """The ci profile's real corpora, tokenizer and token datasets (fetched once, cached)."""
    return tokens_mod.prepare(ci_cfg)


@pytest.fixture()
def tiny_cfg(ci_cfg: config.Config) -> config.Config:
    """The ci profile with a very short training run (its data are the ci data)."""
    return config.load_config("ci", {"train": {"steps": {"L0": 12, "L1": 12, "L2": 24},
                                               "checkpoints": [{"start": 0, "stop": 24, "every": 8}],
                                               "resume_every": 4, "log_every": 2}})


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(scope="session")
def trained() -> tuple[HookedTransformer, torch.Tensor]:
    """A tiny 2-layer attention-only model trained near a minimum of Markov-chain data."""
    data = markov_data(1024)
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        batch = data[torch.randint(0, len(data), (64,), generator=g)]
        loss = model(batch, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, data
