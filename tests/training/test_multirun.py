"""Hydra sweeps of scripts/train.py: a 2-job multirun on the basic launcher, an Optuna search that optimizes the value
the task returns, and the submitit (SLURM, local) launcher, Optuna sweep and experiment configs under configs/
compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training.checkpoints import latest_checkpoint
from training.imitation.config import finalize, register_configs

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "env=reach", "env.max_episode_steps=30", "policy=mlp", "policy.hidden_dims=[32,32]", "policy.chunk_size=4",
    "policy.n_action_steps=4", "steps=6", "batch_size=16", "log_every=3", "optim.warmup_steps=2",
    "eval.final_episodes=0", "progress_bar=false", "torch_threads=1", "logger.mode=disabled",
]


def train_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"scripts/train.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def last_loss(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train/loss"] for row in rows if "train/loss" in row][-1]


@pytest.mark.slow
def test_multirun_with_the_basic_launcher_trains_one_run_per_job(reach_data, tmp_path):
    sweep = tmp_path / "sweep"
    train_script(["-m", *TINY, f"dataset.root={reach_data}", "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]  # hydra.sweep.subdir: the job number
    for seed, job in enumerate(jobs):
        assert f"seed={seed}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert json.loads((job / "config.json").read_text())["seed"] == seed
        assert latest_checkpoint(job).name.endswith("6")
    a, b = (load_file(str(latest_checkpoint(job) / "policy" / "model.safetensors")) for job in jobs)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two seeds, two different runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # nothing written outside the sweep dir


@pytest.mark.slow
def test_optuna_sweep_optimizes_the_objective_the_task_returns(reach_data, tmp_path):
    sweep = tmp_path / "optuna"
    train_script(["-m", *TINY, f"dataset.root={reach_data}", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                  "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0", "objective=train/loss",
                  "policy.optimizer_lr=tag(log, interval(1e-4, 1e-2))", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    losses = {job.name: last_loss(job) for job in sweep.iterdir() if (job / "metrics.jsonl").is_file()}
    assert sorted(losses) == ["0", "1"] and losses["0"] != losses["1"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(losses.values()))
    assert 1e-4 <= results["best_params"]["policy.optimizer_lr"] <= 1e-2


# ------------------------------------------------------------------------------------------------ configs
@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        yield lambda overrides, hydra=True: hydra_compose("train", overrides=["dataset.root=x", *overrides],
                                                          return_hydra_config=hydra)


def test_submitit_launcher_configs_load(compose):
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

    slurm = compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.tasks_per_node=4"])
    launcher = slurm.hydra.launcher
    assert launcher._target_ == f"{SlurmLauncher.__module__}.{SlurmLauncher.__name__}"
    assert (launcher.partition, launcher.tasks_per_node, launcher.gpus_per_node, launcher.max_num_timeout) == (
        "gpu", 4, 1, 0)
    local = compose(["hydra/launcher=local"]).hydra.launcher
    assert local._target_ == f"{LocalLauncher.__module__}.{LocalLauncher.__name__}" and local.gpus_per_node == 0
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"])  # a typo fails against the plugin's schema


@pytest.mark.filterwarnings("ignore:.*has been deprecated in v3.0.0:FutureWarning")  # the plugin's optuna 2 API
@pytest.mark.parametrize("sweep, policy, objective, direction", [
    ("act_optuna", "act", "eval/success_rate", "maximize"),
    ("diffusion_optuna", "diffusion", "val/loss", "minimize"),
])
def test_optuna_sweep_configs_load_and_their_search_spaces_parse(compose, sweep, policy, objective, direction):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
    from omegaconf import OmegaConf

    cfg = compose([f"+sweep={sweep}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == direction
    assert (cfg.policy.type, cfg.objective) == (policy, objective)
    parser = OverridesParser.create()
    for key, space in sweeper.params.items():
        assert OmegaConf.select(cfg, key) is not None, f"{sweep} searches {key}, which the config does not have"
        (override,) = parser.parse_overrides([f"{key}={space}"])
        distribution = create_optuna_distribution_from_override(override)
        assert not isinstance(distribution, str), f"{key}={space} is not a search space"
    typed = finalize(OmegaConf.to_object(compose([f"+sweep={sweep}"], hydra=False)))  # the trainer's checks pass
    assert typed.objective == objective


@pytest.mark.parametrize("experiment, env_id, policy, executed", [
    ("act_transfer_cube", "cerebellum/TransferCube-v0", "act", 1),
    ("diffusion_push_t", "cerebellum/PushT-v0", "diffusion", 2),
])
def test_experiment_configs_compose_into_checked_configs(compose, experiment, env_id, policy, executed):
    from omegaconf import OmegaConf

    typed = finalize(OmegaConf.to_object(compose([f"+experiment={experiment}"], hydra=False)))
    assert (typed.env.id, typed.policy.type, typed.policy.n_action_steps, typed.batch_size) == (
        env_id, policy, executed, 64)
    if policy == "diffusion":  # a dotted feature name survives as one key
        assert typed.policy.angle_inputs == {"observation.environment_state": [2]}
    overridden = finalize(OmegaConf.to_object(compose([f"+experiment={experiment}", "batch_size=8"], hydra=False)))
    assert overridden.batch_size == 8  # command-line overrides still win


@pytest.mark.parametrize("override, message", [
    (["objective=success"], "objective must name a logged metric starting with"),
    (["objective=eval/success_rate", "eval.final_episodes=0"], "needs the final evaluation"),
    (["objective=val/loss"], "needs held-out episodes: set dataset.val_episodes"),
])
def test_an_objective_that_would_never_be_logged_is_refused_before_training(compose, override, message):
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=message):
        finalize(OmegaConf.to_object(compose(override, hydra=False)))
