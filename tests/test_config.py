import pytest

from rllc import config
from rllc.model.build import build_model, n_params


def test_profiles_resolve():
    from rllc import paths

    names = sorted(p.stem for p in paths.PROFILES_DIR.glob("*.yaml"))
    assert {"ci", "cpu", "cpu-12k", "cpu-long", "paper", "paper-smoke"} <= set(names)
    for name in names:
        cfg = config.load_config(name)
        assert cfg.profile == name
        assert config.from_dict(name, cfg.to_dict()) == cfg  # a run's recorded settings load back unchanged
        assert cfg.tokenizer.vocab_size > 0
        for model in ("L0", "L1", "L2"):
            steps = cfg.checkpoint_steps(model)
            assert steps[0] == 0 and steps[-1] == cfg.train.steps[model]
            assert steps == sorted(set(steps))


def test_paper_schedule_is_the_107_rllc_checkpoints():
    steps = config.load_config("paper").checkpoint_steps("L2")
    assert len(steps) == 107
    assert steps[:4] == [0, 100, 200, 400]
    assert 10_000 in steps and 10_400 in steps and 10_200 not in steps
    assert steps[-2:] == [49_000, 50_000]


def test_paper_l2_has_the_papers_parameter_count():
    cfg = config.load_config("paper")
    assert n_params(build_model(cfg, "L2")) == 3_355_016
    assert n_params(build_model(cfg, "L0")) < n_params(build_model(cfg, "L1")) < 3_355_016


def test_overrides_merge_deeply():
    cfg = config.load_config("ci", {"train": {"steps": {"L2": 7}}, "model": {"d_model": 48}})
    base = config.load_config("ci")
    assert cfg.train.steps["L2"] == 7 and cfg.train.steps["L1"] == base.train.steps["L1"]
    assert cfg.model.d_model == 48 and cfg.model.n_heads == base.model.n_heads


def test_unknown_settings_are_rejected_with_the_valid_names():
    with pytest.raises(KeyError, match="valid"):
        config.load_config("ci", {"train": {"stepz": 3}})
    with pytest.raises(KeyError, match="L3"):
        config.load_config("ci", {"train": {"steps": {"L3": 3}}})
    with pytest.raises(FileNotFoundError, match="available"):
        config.load_config("nonexistent")


def test_config_hash_is_stable_and_sensitive():
    a = config.load_config("ci")
    assert config.config_hash(a.model) == config.config_hash(config.load_config("ci").model)
    assert config.config_hash(a.model) != config.config_hash(config.load_config("cpu").model)


def test_a_profile_extends_another(tmp_path):
    from rllc import config
    from rllc.run import identity

    base = config.load_config("cpu")
    for name, steps in (("cpu-long", 36000), ("cpu-12k", 12000)):
        other = config.load_config(name)
        assert other.profile == name and other.train.steps["L2"] == steps != base.train.steps["L2"]
        assert other.sampler == base.sampler and other.model == base.model and other.llc == base.llc
        assert identity(base, "L2") == identity(other, "L2")  # the same weights along the shared steps
        shorter, longer = sorted((base, other), key=lambda c: c.train.steps["L2"])
        assert set(shorter.checkpoint_steps("L2")) <= set(longer.checkpoint_steps("L2"))
    loop = tmp_path / "loop.yaml"
    loop.write_text("profile: loop\nextends: " + str(loop) + "\nconfig: {}\n")
    with pytest.raises(ValueError, match="extends itself"):
        config.load_config(loop)


@pytest.mark.parametrize("section, key, value, expected", [
    ("sampler", "nbeta", 30, None),  # an integer where a number is expected
    ("corpus", "max_bytes_per_source", None, None),  # None where the setting is optional: no cap
    ("train", "device", None, "train.device: expected a string, got NoneType None"),
    ("sampler", "chains", 2.0, "sampler.chains: expected an integer, got float 2.0"),
    ("sampler", "chains", True, "sampler.chains: expected an integer, got bool True"),
    ("expect_phenomena", None, "yes", "expect_phenomena: expected true or false, got str 'yes'"),
    ("llc", "precision_draws", 50, "llc.precision_draws: expected a list, got int 50"),
    ("train", "checkpoints", {"start": 0}, "train.checkpoints: expected a list of {start, stop, every}"),
])
def test_settings_of_the_wrong_kind_are_refused_in_one_line(section, key, value, expected):
    from rllc import config

    over = {section: value} if key is None else {section: {key: value}}
    if expected is None:
        config.load_config("ci", over)
        return
    with pytest.raises(ValueError) as info:
        config.load_config("ci", over)
    assert expected in str(info.value) and "\n" not in str(info.value)
