"""A policy family defined outside this repository (config + model + export in a temp package) registers itself and
goes through train -> export -> runtime without editing any table; a fresh process finds it from the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from deploy.export import ExportConfig, export_checkpoint
from deploy.runtime import BundlePolicy, ChunkRunner
from policies import available_policies, registry
from training.checkpoints import latest_checkpoint
from training.datasets.observations import ObservationMapping
from training.imitation.config import config_from_dict
from training.imitation.trainer import run

REPO = Path(__file__).resolve().parents[2]
FAMILY = "toy_linear"
PACKAGE = "cerebellum_test_toy_family"

CONFIG = '''
"""Toy family config: one linear layer from the state vectors to a chunk."""
from dataclasses import dataclass

from policies.config import PolicyConfig
from policies.registry import register_config


@register_config("toy_linear")
@dataclass
class ToyLinearConfig(PolicyConfig):
    type: str = "toy_linear"
    chunk_size: int = 4
    n_action_steps: int = 2
    optimizer_lr: float = 1e-2

    def chunk_length(self) -> int:
        return self.chunk_size
'''

MODEL = '''
"""Toy family model."""
import torch
import torch.nn.functional as F
from torch import nn

from policies.interface import Policy
from policies.registry import register_policy

from .config import ToyLinearConfig


@register_policy("toy_linear")
class ToyLinearPolicy(Policy):
    config_class = ToyLinearConfig

    def __init__(self, config, stats=None):
        super().__init__(config, stats)
        size = sum(spec.shape[0] for spec in self.input_specs.values())
        self.linear = nn.Linear(size, config.chunk_size * self.action_dim)

    @property
    def action_delta_indices(self):
        return list(range(self.config.chunk_size))

    def predict_normalized_chunk(self, observations):
        x = torch.cat([observations[k][:, -1] for k in self.input_specs], dim=-1)
        return self.linear(x).reshape(x.shape[0], self.config.chunk_size, self.action_dim)

    def compute_loss(self, batch):
        target, is_pad = self.prepare_actions(batch)
        predicted = self.predict_normalized_chunk(self.prepare_observations(batch))
        loss = (F.l1_loss(predicted, target, reduction="none") * (~is_pad).unsqueeze(-1)).mean()
        return loss, {"loss": loss.detach()}
'''

EXPORT = '''
"""Toy family export: the shared one-pass chunk graph."""
from policies.export import describe_chunk_policy
from policies.registry import register_export


@register_export("toy_linear")
def describe(policy, env, options):
    return describe_chunk_policy(policy, env, {"family": "toy, from a temp package"})
'''


@pytest.fixture(scope="module")
def toy_family(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    package = root / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text('"""A policy family outside the repository, for the plugin test."""\n')
    for name, text in (("config", CONFIG), ("model", MODEL), ("export", EXPORT)):
        (package / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    sys.path.insert(0, str(root))
    __import__(f"{PACKAGE}.config")  # what a user's code (or a Hydra app's entry point) does
    yield root
    sys.path.remove(str(root))
    for table in (registry._configs, registry._policies, registry._exports, registry._packages):
        table.pop(FAMILY, None)  # later tests see the built-in families only


@pytest.mark.slow
def test_a_family_in_another_package_trains_exports_and_runs(toy_family, small_reach_data, tmp_path):
    assert FAMILY in available_policies()
    data = small_reach_data
    cfg = config_from_dict({
        "env": {"id": "cerebellum/Reach-v0", "max_episode_steps": 20}, "policy": {"type": FAMILY},
        "dataset": {"root": str(data)}, "steps": 30, "batch_size": 8, "log_every": 10,
        "optim": {"warmup_steps": 2}, "eval": {"final_episodes": 0, "n_envs": 1, "video_episodes": 0},
        "checkpoint": {"every_steps": 0}, "logger": {"mode": "disabled"}, "progress_bar": False, "torch_threads": 1,
    })
    result = run(cfg, tmp_path / "run")
    losses = [row["train/loss"] for row in result.history if "train/loss" in row]
    assert len(losses) == 3 and losses[-1] < losses[0]  # the family's compute_loss drives the trainer
    checkpoint = latest_checkpoint(tmp_path / "run")
    saved = json.loads((checkpoint / "policy" / "config.json").read_text())
    assert saved["type"] == FAMILY and saved["module"] == f"{PACKAGE}.config"

    bundle = tmp_path / "bundle"
    exported = export_checkpoint(ExportConfig(checkpoint=str(checkpoint), output=str(bundle)))
    assert exported.parity is not None and exported.parity.passed
    m = exported.manifest
    assert m.policy_type == FAMILY and m.source.extra["export_notes"] == {"family": "toy, from a temp package"}
    assert (m.control.chunk_size, m.control.n_action_steps) == (4, 2)

    # The bundle runs in the torch-free runtime: one chunk per n_action_steps ticks, commands within the limits.
    assert BundlePolicy(bundle).predict_chunk({f.key: np.zeros((1, *f.shape), np.float32)
                                               for f in m.observation}).shape == (4, 6)
    env = gym.make("cerebellum/Reach-v0", max_episode_steps=20)
    mapping = ObservationMapping()
    with ChunkRunner(bundle, mode="sync", sync_deadline_s=None) as runner:
        obs, _ = env.reset(seed=0)
        for _ in range(6):
            action = runner.tick({k: np.asarray(v, np.float32) for k, v in mapping(obs).items()})
            assert action is not None and np.isfinite(action).all()
            assert (action >= np.asarray(m.action.lower) - 1e-6).all()
            assert (action <= np.asarray(m.action.upper) + 1e-6).all()
            obs, *_ = env.step(action)
        assert runner.statistics.requests == 3 and not runner.faults
    env.close()

    # A fresh process that never imported the family loads the checkpoint: it imports the recorded module.
    code = "import sys; from training.imitation.trainer import load; print(load(sys.argv[1]).name)"
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_family), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code, str(checkpoint)], capture_output=True, text=True, env=env_vars,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == FAMILY


@pytest.mark.slow
def test_an_installed_family_works_from_the_command_line(toy_family, small_reach_data, tmp_path):
    """A package that announces its family under the `cerebellum.policies` entry point (what `pip install` of a
    pyproject with [project.entry-points."cerebellum.policies"] writes) is trained and exported by the scripts with
    `policy=<name>` alone: no import, no YAML, no table of ours edited."""
    dist_info = toy_family / f"{PACKAGE}-0.1.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[cerebellum.policies]\n{FAMILY} = {PACKAGE}.config\n")
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_family), str(REPO)]), "WANDB_MODE": "disabled"}

    def script(name, *overrides):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / name), *overrides], capture_output=True,
                              text=True, env=env_vars, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, f"{name}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        return done

    run_dir = tmp_path / "run"
    script("train.py", "env=reach", f"policy={FAMILY}", "policy.chunk_size=6", f"dataset.root={small_reach_data}",
           "steps=20", "batch_size=8", "eval.final_episodes=0", "logger.mode=disabled", "progress_bar=false",
           "torch_threads=1", f"run_dir={run_dir}")
    checkpoint = latest_checkpoint(run_dir)
    saved = json.loads((checkpoint / "policy" / "config.json").read_text())
    assert (saved["type"], saved["config"]["chunk_size"], saved["module"]) == (FAMILY, 6, f"{PACKAGE}.config")
    script("export.py", f"checkpoint={run_dir}", f"output={tmp_path / 'bundle'}")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["policy_type"] == FAMILY and manifest["control"]["chunk_size"] == 6
