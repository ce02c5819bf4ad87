"""Registry, construction from dataset features/stats, save -> load, configs and their YAML mirrors."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from policies import available_policies, load_policy, make_policy, policy_config_classes, save_policy
from policies.config import PolicyConfig
from policies.factory import CONFIG_FILE, WEIGHTS_FILE, config_from_dict, policy_from_state_dict, policy_state_dict
from policies.registry import register_config

from .synthetic import STATE_FEATURES, TINY, image_features, random_observation_window, train_losses

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "policy"


def test_registry_lists_the_three_policies():
    assert available_policies() == ["act", "diffusion", "mlp"]
    classes = policy_config_classes()
    assert {name: cls.__name__ for name, cls in classes.items()} == {
        "act": "ACTConfig", "diffusion": "DiffusionConfig", "mlp": "MLPConfig",
    }
    with pytest.raises(ValueError, match="unknown policy type 'transformer'"):
        make_policy("transformer", STATE_FEATURES, {})


@pytest.mark.parametrize("name", ["act", "diffusion", "mlp"])
def test_yaml_mirrors_the_dataclass(name):
    cls = policy_config_classes()[name]
    data = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    fields = [f.name for f in dataclasses.fields(cls)]
    assert list(data) == fields
    assert data == dataclasses.asdict(cls())  # same defaults
    # As a Hydra structured config: a typo fails clearly, a wrong type fails, a valid override validates.
    schema = OmegaConf.structured(cls)
    merged = OmegaConf.merge(schema, OmegaConf.create(data))
    with pytest.raises(ConfigKeyError, match="n_action_stepz"):
        OmegaConf.merge(schema, {"n_action_stepz": 3})
    with pytest.raises(ValidationError):
        OmegaConf.merge(schema, {"n_action_steps": "many"})
    with pytest.raises(ValueError, match="n_action_steps must be in"):
        OmegaConf.to_object(OmegaConf.merge(merged, {"n_action_steps": 10_000}))
    assert isinstance(OmegaConf.to_object(merged), cls)


def test_make_policy_accepts_a_hydra_config(task):
    cfg = OmegaConf.merge(OmegaConf.structured(policy_config_classes()["mlp"]), TINY["mlp"])
    policy = make_policy(cfg, STATE_FEATURES, task.stats())
    assert policy.config.hidden_dims == [64, 64]
    assert policy.config.input_features == {"observation.state": [4], "observation.environment_state": [3]}


def test_explicit_features_select_and_are_checked(task):
    only_state = {"type": "mlp", **TINY["mlp"], "input_features": {"observation.state": [4]}}
    policy = make_policy(only_state, image_features(32, 32), task.stats())
    assert list(policy.input_specs) == ["observation.state"]
    with pytest.raises(ValueError, match=r"input_features\['observation.state'\] has shape \[5\] but the dataset's is"):
        make_policy({**only_state, "input_features": {"observation.state": [5]}}, STATE_FEATURES, task.stats())
    with pytest.raises(ValueError, match="asks for 'observation.images.top', which the dataset does not have"):
        camera = {"observation.images.top": [3, 32, 32]}
        make_policy({**only_state, "input_features": camera}, STATE_FEATURES, task.stats())
    with pytest.raises(ValueError, match="stats have no entry for feature 'observation.environment_state'"):
        stats = {k: v for k, v in task.stats().items() if k != "observation.environment_state"}
        make_policy({"type": "mlp", **TINY["mlp"]}, STATE_FEATURES, stats)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['dim_modle'\]"):
        config_from_dict({"type": "act", "dim_modle": 3})
    with pytest.raises(ValueError, match="no 'type' field"):
        config_from_dict({"dim_model": 3})
    with pytest.raises(ValueError, match="horizon .* must be divisible"):
        config_from_dict({"type": "diffusion", "horizon": 10, "down_dims": [8, 16, 32]})
    with pytest.raises(ValueError, match="output_features has no 'action' shape"):
        make_policy("act")  # no dataset features to build a network from
    with pytest.raises(ValueError, match="input_features is empty"):
        make_policy({"type": "act", "output_features": {"action": [2]}})


@pytest.mark.parametrize(
    "name, features",
    [("act", STATE_FEATURES), ("diffusion", STATE_FEATURES), ("mlp", STATE_FEATURES), ("act", image_features(32, 32))],
)
def test_save_load_gives_identical_outputs(tmp_path, task, name, features):
    policy = make_policy({"type": name, **TINY[name]}, features, task.stats())
    train_losses(policy, task if "observation.images.top" not in policy.input_specs else _ImageTask(task), 3, 1e-3)
    policy.eval()
    save_policy(policy, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    meta = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    assert meta["type"] == name and meta["config"]["input_features"] == policy.config.input_features
    loaded = load_policy(tmp_path / "ckpt", expected_type=name).eval()
    assert type(loaded) is type(policy) and loaded.config == policy.config
    obs = random_observation_window(policy, 2, seed=3)
    kwargs = {}
    if name == "diffusion":
        kwargs["noise"] = torch.randn(2, policy.config.horizon, 2)
    assert torch.equal(policy.predict_chunk(obs, **kwargs), loaded.predict_chunk(obs, **kwargs))
    for key, value in policy_state_dict(policy).items():
        assert torch.equal(loaded.state_dict()[key], value), key


class _ImageTask:
    """Adds a random uint8 camera frame to the synthetic task's batches."""

    def __init__(self, task):
        self.task = task

    def batch(self, policy, batch_size, rng):
        batch = self.task.batch(policy, batch_size, rng)
        n_obs = policy.config.n_obs_steps
        frames = rng.integers(0, 256, (batch_size, n_obs, 3, 32, 32), dtype=np.uint8)
        batch["observation.images.top"] = torch.from_numpy(frames)
        return batch


def test_loading_refuses_wrong_type_and_broken_checkpoints(tmp_path, task):
    policy = make_policy({"type": "mlp", **TINY["mlp"]}, STATE_FEATURES, task.stats())
    save_policy(policy, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="holds a 'mlp' policy, expected 'act'"):
        load_policy(tmp_path / "ckpt", expected_type="act")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_policy(tmp_path)
    (tmp_path / "ckpt" / WEIGHTS_FILE).rename(tmp_path / "moved.safetensors")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        load_policy(tmp_path / "ckpt")
    (tmp_path / "moved.safetensors").rename(tmp_path / "ckpt" / WEIGHTS_FILE)
    state = policy_state_dict(policy)
    state.pop("action_normalizer.features.action.mean")
    with pytest.raises(ValueError, match="missing .*action_normalizer.features.action.mean"):
        policy_from_state_dict(policy.config, state)
    meta_path = tmp_path / "ckpt" / CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unsupported format_version 99"):
        load_policy(tmp_path / "ckpt")
    # A family whose recorded module is gone (its package uninstalled) is named, with what to do about it.
    meta.update(format_version=1, type="ghost", module="no_such_package.ghost.config")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'no_such_package.ghost.config' cannot be imported .*install the package"):
        load_policy(tmp_path / "ckpt")


def test_a_policy_saved_before_families_were_recorded_still_loads(tmp_path, task):
    policy = make_policy({"type": "mlp", **TINY["mlp"]}, STATE_FEATURES, task.stats()).eval()
    save_policy(policy, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta.pop("module") == "policies.mlp.config"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    obs = random_observation_window(policy, 2)
    assert torch.equal(load_policy(tmp_path).predict_chunk(obs), policy.predict_chunk(obs))


def test_registry_refuses_taken_and_malformed_family_names():
    with pytest.raises(ValueError, match=r"'act' already has a config class \(policies.act.config.ACTConfig\)"):
        @register_config("act")
        @dataclasses.dataclass
        class OtherConfig(PolicyConfig):
            type: str = "act"
    assert policy_config_classes()["act"].__module__ == "policies.act.config"
    with pytest.raises(ValueError, match="plain identifier"):
        register_config("my policy")
    with pytest.raises(ValueError, match="unknown policy type 'nope'; available: \\['act', 'diffusion', 'mlp'"):
        make_policy({"type": "nope"})


def test_training_batch_that_does_not_match_the_config_is_refused(task):
    policy = make_policy({"type": "act", **TINY["act"]}, STATE_FEATURES, task.stats())
    batch = task.batch(policy, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"'action' has shape \(2, 8, 3\), expected \(B, 8, 2\)"):
        policy.compute_loss(dict(batch, action=torch.zeros(2, 8, 3)))
    with pytest.raises(ValueError, match="observation 'observation.environment_state' missing"):
        policy.compute_loss({k: v for k, v in batch.items() if not k.startswith("observation.environment_state")})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["act", "diffusion", "mlp"])
def test_compute_loss_traces_as_one_graph_for_torch_compile(task, name):
    # Logs come back as 0-dim tensors: a float()/item() inside compute_loss splits the compiled graph (and syncs).
    policy = make_policy({"type": name, **TINY[name]}, STATE_FEATURES, task.stats())
    batch = task.batch(policy, 4, np.random.default_rng(0))
    explanation = torch._dynamo.explain(policy.compute_loss)(batch)
    assert explanation.graph_break_count == 0, [str(r.reason)[:200] for r in explanation.break_reasons]
    loss, logs = policy.compute_loss(batch)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in logs.values())
    assert float(logs["loss"]) == pytest.approx(float(loss))
