"""Imitation trainer: loss falls per policy, checkpoints round-trip, exact resume (also after kill -9), evaluation JSON,
Hydra type checks and clear errors for mismatched inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.processes import kill_9, reaped, wait_for
from training.checkpoints import latest_checkpoint
from training.datasets import WindowDataset
from apps.evaluation import EvaluateConfig, evaluate_checkpoint
from training.imitation.checks import ImitationSetupError
from training.imitation.checkpoint import read_imitation_checkpoint
from training.imitation.config import config_from_dict, finalize, register_configs
from training.imitation.trainer import load, resume, resumed_config, run, train

REPO = Path(__file__).resolve().parents[2]
REACH = {"id": "cerebellum/Reach-v0", "max_episode_steps": 30}
TINY = {
    "act": dict(dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1,
                n_vae_encoder_layers=1, latent_dim=8, chunk_size=8, n_action_steps=4, optimizer_lr=1e-3),
    "diffusion": dict(down_dims=[16, 32], horizon=8, n_action_steps=4, diffusion_step_embed_dim=16, kernel_size=3,
                      optimizer_lr=3e-3, num_inference_steps=5),
    "mlp": dict(hidden_dims=[64, 64], chunk_size=8, n_action_steps=4, optimizer_lr=1e-3),
}


@pytest.fixture(autouse=True)
def quiet_and_single_threaded(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def make_cfg(data: Path, policy: str, **fields):
    """A config as Hydra would build it (plain dict -> typed, validated dataclasses)."""
    base = {
        "env": dict(REACH), "policy": {"type": policy, **TINY[policy]}, "dataset": {"root": str(data)},
        "steps": 20, "batch_size": 16, "log_every": 10, "optim": {"warmup_steps": 5},
        "eval": {"final_episodes": 0, "n_envs": 2, "video_episodes": 0}, "checkpoint": {"every_steps": 0},
        "logger": {"mode": "disabled"}, "progress_bar": False, "torch_threads": 1,
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return config_from_dict(base)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / "policy" / "model.safetensors"))


def trainer_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / "trainer_state.safetensors"))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


# ------------------------------------------------------------------------------------------------ learning
@pytest.mark.slow
@pytest.mark.parametrize("policy, steps", [("act", 60), ("diffusion", 150), ("mlp", 60)])
def test_training_loss_falls_for_each_policy(reach_data, tmp_path, policy, steps):
    result = train(make_cfg(reach_data, policy, steps=steps), tmp_path / "run")
    losses = [row["train/loss"] for row in result.history if "train/loss" in row]
    assert len(losses) == steps // 10
    assert losses[-1] < 0.85 * losses[0], losses
    assert result.step == steps and result.checkpoint == latest_checkpoint(tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, steps + 1, 10))
    assert all(np.isfinite(r["train/grad_norm"]) for r in rows)


def test_warmup_then_cosine_schedule_reaches_zero(reach_data, tmp_path):
    result = train(make_cfg(reach_data, "mlp", steps=40, log_every=1, optim={"warmup_steps": 10}), tmp_path / "run")
    lrs = [row["train/lr"] for row in result.history]
    peak = TINY["mlp"]["optimizer_lr"]
    assert lrs[0] == pytest.approx(peak * 1 / 10)  # linear warm-up: lr after the first step
    assert lrs[9] == pytest.approx(peak)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # cosine decays to zero at the last step
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["act", "diffusion"])
def test_checkpoint_load_gives_identical_outputs(reach_data, tmp_path, policy):
    result = train(make_cfg(reach_data, policy, steps=10), tmp_path / "run")
    trained = result.policy.eval()
    ckpt = read_imitation_checkpoint(tmp_path / "run")
    assert (ckpt.policy_type, ckpt.step, ckpt.config.policy.type) == (policy, 10, policy)
    loaded = ckpt.load_policy("cpu").eval()
    assert_same_tensors(trained.state_dict(), loaded.state_dict())  # incl. normalization buffers and EMA weights
    ds = WindowDataset(reach_data, {k: v for k, v in trained.delta_indices().items() if k != "action"})
    window = {k: v for k, v in ds[list(range(0, len(ds), 7))].items() if k in trained.input_specs}
    kwargs = {}
    if policy == "diffusion":
        kwargs["noise"] = torch.randn(len(window["observation.state"]), trained.config.horizon, trained.action_dim,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(trained.predict_chunk(window, **kwargs), loaded.predict_chunk(window, **kwargs))
    assert json.loads((ckpt.path / "dataset_stats.json").read_text()) == json.loads(
        (reach_data / "meta" / "stats.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["act", "diffusion"])
def test_resume_equals_uninterrupted(reach_data, tmp_path, policy):
    """ACT (dropout, CVAE sampling) and Diffusion (noise, timesteps, EMA) consume random numbers every step."""
    cfg = make_cfg(reach_data, policy, steps=12, log_every=1, checkpoint={"every_steps": 4})
    whole = train(cfg, tmp_path / "whole")
    part = train(make_cfg(reach_data, policy, steps=12, log_every=1, checkpoint={"every_steps": 4}),
                 tmp_path / "split", should_stop=lambda step: step == 6)
    assert part.step == 6 and latest_checkpoint(tmp_path / "split").name.endswith("6")
    resumed = run(make_cfg(reach_data, policy, resume=str(tmp_path / "split")), tmp_path / "unused")
    assert resumed.step == 12 and resumed.run_dir == tmp_path / "split"
    assert_same_tensors(weights(tmp_path / "whole"), weights(tmp_path / "split"))
    # Optimizer moments and step counts, and the RNG state, are identical too.
    assert_same_tensors(trainer_tensors(tmp_path / "whole"), trainer_tensors(tmp_path / "split"))
    losses = {row["step"]: row["train/loss"] for row in whole.history}
    assert [losses[row["step"]] for row in resumed.history] == [row["train/loss"] for row in resumed.history]


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_reaches_the_final_step(reach_data, tmp_path):
    steps, every = 1500, 50
    run_dir = tmp_path / "killed"
    overrides = [
        "env=reach", "env.max_episode_steps=30", "policy=mlp", "policy.hidden_dims=[64,64]", "policy.chunk_size=8",
        "policy.n_action_steps=4", f"dataset.root={reach_data}", f"steps={steps}", "batch_size=16",
        f"checkpoint.every_steps={every}", "eval.final_episodes=0", "progress_bar=false", "torch_threads=1",
        "logger.mode=disabled", f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "egl"}
    with reaped(subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), *overrides], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)) as proc:
        wait_for(lambda: latest_checkpoint(run_dir) is not None, proc, "checkpoint", timeout=120)
        kill_9(proc)
    killed_at = read_imitation_checkpoint(run_dir).step
    assert proc.returncode == -signal.SIGKILL and 0 < killed_at < steps

    given = finalize(make_cfg(reach_data, "mlp", resume=str(run_dir)))
    result = run(given, tmp_path / "unused", overrides=[f"resume={run_dir}"])
    assert result.step == steps and read_imitation_checkpoint(run_dir).step == steps
    # Nothing lost beyond the last checkpoint: the result is bit-identical to an uninterrupted run.
    saved = read_imitation_checkpoint(run_dir).config
    train(saved, tmp_path / "whole")
    assert_same_tensors(weights(tmp_path / "whole"), weights(run_dir))


# ------------------------------------------------------------------------------------------------ evaluation
@pytest.mark.slow
def test_eval_of_an_imitation_checkpoint_returns_the_documented_json(reach_data, tmp_path):
    train(make_cfg(reach_data, "diffusion", steps=10), tmp_path / "run")
    runs = []
    for name in ("a", "b"):  # b: sub-envs in worker processes
        cfg = EvaluateConfig(checkpoint=str(tmp_path / "run"), episodes=3, n_envs=2,
                             video_episodes=1 if name == "a" else 0, async_envs=name == "b")
        evaluate_checkpoint(cfg, tmp_path / name)
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    data = runs[0]
    assert data["schema_version"] == 1 and data["env_id"] == "cerebellum/Reach-v0" and data["episodes"] == 3
    assert 0.0 <= data["success_ci95"][0] <= data["success_rate"] <= data["success_ci95"][1] <= 1.0
    assert data["mean_length"] == 30.0 and isinstance(data["mean_return"], float)
    assert set(data["per_episode"][0]) == {"episode", "seed", "success", "return", "length", "physics_error"}
    assert len(data["videos"]) == 1 and Path(data["videos"][0]).stat().st_size > 0
    meta = data["metadata"]
    assert (meta["kind"], meta["type"], meta["step"]) == ("imitation", "diffusion", 10)
    # Fixed seeds (env episodes and sampling noise): a second evaluation, in worker processes, agrees episode by
    # episode.
    assert data["per_episode"] == runs[1]["per_episode"]


@pytest.mark.slow
def test_periodic_evaluation_and_validation_during_training(reach_data, tmp_path):
    cfg = make_cfg(reach_data, "mlp", steps=20, dataset={"root": str(reach_data), "val_episodes": 1}, val_every=10,
                   eval={"every_steps": 10, "episodes": 2, "n_envs": 2, "final_episodes": 2, "video_episodes": 1})
    result = train(cfg, tmp_path / "run")
    evals = [row for row in result.history if "eval/success_rate" in row]
    assert [row["step"] for row in evals] == [10, 20]
    # Step 0 is the untrained reference; validation runs on the held-out episode only.
    assert [row["step"] for row in result.history if "val/loss" in row] == [0, 10, 20]
    assert result.final_eval is not None and result.final_eval.episodes == 2
    assert (tmp_path / "run" / "eval" / "step_000000000010" / "results.json").is_file()
    assert len(list((tmp_path / "run" / "eval" / "final" / "videos").glob("*.mp4"))) == 1


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_dataset_is_refused_before_training(tmp_path):
    with pytest.raises(ImitationSetupError, match="does not exist"):
        train(make_cfg(tmp_path / "nowhere", "mlp"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_dataset_of_another_task_is_refused(reach_data, tmp_path):
    cfg = make_cfg(reach_data, "mlp", env={"id": "cerebellum/TransferCube-v0", "max_episode_steps": None})
    with pytest.raises(ImitationSetupError, match="recorded on 'cerebellum/Reach-v0' but env.id is"):
        train(cfg, tmp_path / "run")


def test_policy_features_missing_from_the_dataset_are_refused(reach_data, tmp_path):
    cfg = make_cfg(reach_data, "act")
    cfg.policy.input_features = {"observation.images.top": [3, 64, 64]}
    with pytest.raises(ImitationSetupError, match="does not fit the act policy config.*observation.images.top"):
        train(cfg, tmp_path / "run")


def test_env_that_does_not_observe_the_policy_inputs_is_refused(reach_data, tmp_path):
    cfg = make_cfg(reach_data, "mlp", env={**REACH, "obs_mode": "pixels"})
    with pytest.raises(ImitationSetupError, match="'observation.state', which env .* does not observe"):
        train(cfg, tmp_path / "run")


def test_checkpoint_of_another_policy_type_is_refused(reach_data, tmp_path):
    train(make_cfg(reach_data, "mlp", steps=2), tmp_path / "mlp_run")
    with pytest.raises(ImitationSetupError, match="already holds a run with checkpoints; continue it with resume="):
        train(make_cfg(reach_data, "mlp", steps=2), tmp_path / "mlp_run")
    with pytest.raises(ImitationSetupError, match="holds a 'mlp' policy, but this run trains 'act'"):
        train(make_cfg(reach_data, "act", init_from=str(tmp_path / "mlp_run")), tmp_path / "act_run")
    resumed = read_imitation_checkpoint(tmp_path / "mlp_run")
    given = make_cfg(reach_data, "act", resume=str(tmp_path / "mlp_run"))
    with pytest.raises(ImitationSetupError, match="trains a 'mlp' policy, but policy=act"):
        resumed_config(resumed, given, ["policy=act", f"resume={tmp_path / 'mlp_run'}"])
    with pytest.raises(ImitationSetupError, match=r"cannot be applied: \['steps'\]"):
        resumed_config(resumed, given, ["steps=5"])


def test_resume_takes_execution_overrides_only_and_load_returns_the_trained_policy(reach_data, tmp_path, capfd):
    cfg = make_cfg(reach_data, "mlp", steps=8, log_every=1, checkpoint={"every_steps": 4})
    train(cfg, tmp_path / "run", should_stop=lambda step: step == 4)
    with pytest.raises(ImitationSetupError, match=r"cannot be applied: \['batch_size', 'optim.eps'\]\. Allowed"):
        resume(tmp_path / "run", ["batch_size=4", "device=cpu", "optim.eps=1e-6"])
    capfd.readouterr()
    result = resume(tmp_path / "run", ["progress_bar=true", "log_every=2"])  # stderr is no terminal here
    assert result.step == 8 and [row["step"] for row in result.history] == [6, 8]
    err = capfd.readouterr().err
    assert "\r" not in err and "train mlp: 8/8 steps (100%)" in err
    saved = read_imitation_checkpoint(tmp_path / "run").config
    assert (saved.progress_bar, saved.log_every, saved.resume) == (True, 2, None)
    policy = load(tmp_path / "run")
    assert not policy.training
    for key, value in weights(tmp_path / "run").items():
        assert torch.equal(policy.state_dict()[key], value), key


def test_init_from_copies_the_weights_of_a_same_type_checkpoint(reach_data, tmp_path):
    train(make_cfg(reach_data, "mlp", steps=5), tmp_path / "first")
    cfg = make_cfg(reach_data, "mlp", steps=1, init_from=str(tmp_path / "first"))
    cfg.policy.optimizer_lr = 1e-12  # one step that barely moves the weights
    second = train(cfg, tmp_path / "second")
    first = weights(tmp_path / "first")
    for key, value in second.policy.state_dict().items():
        torch.testing.assert_close(value, first[key], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------ GPU path (what the CPU can check)
def test_device_choice_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from training.imitation import hardware

    assert hardware.choose_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
            hardware.choose_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="device='mps' but MPS .* is not available"):
            hardware.choose_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert hardware.choose_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.choose_device("auto") == torch.device("cuda")
    assert hardware.choose_device("auto", local_rank=3) == torch.device("cuda", 3)  # torchrun: the local rank's GPU


def test_mixed_precision_dtype_and_loss_scaling_per_device(monkeypatch):
    from training.imitation import hardware

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert hardware.amp_dtype(cpu, True, "auto") is None  # float32 on the CPU unless asked
    assert hardware.amp_dtype(cpu, True, "bf16") is torch.bfloat16
    assert hardware.amp_dtype(cpu, False, "bf16") is None  # amp=false wins
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.amp_dtype(cuda, True, "auto") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.amp_dtype(cuda, True, "auto") is torch.float16
    with pytest.raises(ValueError, match="no bfloat16 support; use amp_dtype=fp16"):
        hardware.amp_dtype(cuda, True, "bf16")
    assert hardware.grad_scaler(cpu, torch.bfloat16) is None
    assert isinstance(hardware.grad_scaler(cpu, torch.float16), torch.amp.GradScaler)
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        make_cfg(Path("x"), "mlp", amp_dtype="fp8")


def test_bf16_autocast_trains_on_the_cpu(reach_data, tmp_path):
    full = train(make_cfg(reach_data, "mlp", steps=30), tmp_path / "fp32").history
    half = train(make_cfg(reach_data, "mlp", steps=30, amp_dtype="bf16"), tmp_path / "bf16").history
    full_loss, half_loss = ([row["train/loss"] for row in h] for h in (full, half))
    assert half_loss != full_loss  # autocast really ran in bfloat16 ...
    assert half_loss == pytest.approx(full_loss, rel=0.05)  # ... and learned the same thing
    assert half_loss[-1] < 0.85 * half_loss[0]


@pytest.mark.slow
def test_fp16_loss_scaling_is_checkpointed_and_resumed_exactly(reach_data, tmp_path):
    def cfg(**fields):
        return make_cfg(reach_data, "mlp", steps=8, log_every=1, amp_dtype="fp16", checkpoint={"every_steps": 4},
                        **fields)

    train(cfg(), tmp_path / "whole")
    train(cfg(), tmp_path / "split", should_stop=lambda step: step == 4)
    scaler = read_imitation_checkpoint(tmp_path / "split").state["grad_scaler"]
    assert scaler is not None and scaler["scale"] > 0
    run(cfg(resume=str(tmp_path / "split")), tmp_path / "unused")
    assert_same_tensors(weights(tmp_path / "whole"), weights(tmp_path / "split"))
    assert read_imitation_checkpoint(tmp_path / "split").state["grad_scaler"] == \
        read_imitation_checkpoint(tmp_path / "whole").state["grad_scaler"]


@pytest.mark.slow
def test_compile_flag_compiles_the_training_loss_and_the_default_path_stays_plain(reach_data):
    """Compiling even a tiny policy takes minutes on this CPU, so this checks the wiring; a compiled run's losses were
    compared with eager ones by hand (equal to 6 decimals over 6 MLP steps)."""
    from policies.factory import make_policy
    from training.datasets import DatasetMeta
    from training.distributed import DistributedContext
    from training.imitation.trainer import _loss_function

    meta = DatasetMeta(reach_data)
    policy = make_policy(make_cfg(reach_data, "mlp").policy, features=meta.shapes(channel_first=True), stats=meta.stats)
    plain = _loss_function(policy, make_cfg(reach_data, "mlp"), DistributedContext(), torch.device("cpu"))
    assert plain == policy.compute_loss  # the single-process path calls the policy itself, as before
    compiled = _loss_function(policy, make_cfg(reach_data, "mlp", compile=True, compile_mode="reduce-overhead"),
                              DistributedContext(), torch.device("cpu"))
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled._orig_mod.policy is policy
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        make_cfg(reach_data, "mlp", compile=True, compile_mode="fastest")


# ------------------------------------------------------------------------------------------------ Hydra
@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        yield lambda overrides: hydra_compose("train", overrides=overrides)


def test_hydra_builds_typed_policy_and_per_env_dataset(compose):
    from omegaconf import OmegaConf

    from policies.diffusion.config import DiffusionConfig

    cfg = finalize(OmegaConf.to_object(compose(["env=push_t", "policy=diffusion", "policy.num_inference_steps=4"])))
    assert isinstance(cfg.policy, DiffusionConfig) and cfg.policy.num_inference_steps == 4
    assert cfg.env.id == "cerebellum/PushT-v0" and cfg.dataset.root == "data/push_t_expert"


@pytest.mark.parametrize("override, message", [
    ("policy.dim_modle=64", "Key 'dim_modle' not in 'ACTConfig'"),
    ("policy.dim_model=wide", "policy.dim_model"),
    ("policy=transformer", "Could not find 'policy/transformer'"),
    ("stepz=10", "Key 'stepz' not in 'ImitationTrainConfig'"),
    ("optim.warmup=3", "Key 'warmup' not in 'OptimConfig'"),
])
def test_hydra_refuses_wrong_overrides(compose, override, message):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with pytest.raises((HydraException, OmegaConfBaseException)) as info:
        compose(["dataset.root=x", override])
    # Hydra names the override; the cause says what is wrong with it.
    assert message in f"{info.value}\n{info.value.__cause__}"


# ------------------------------------------------------------------------------------------------ no env (issue 12)
def test_training_without_an_env_takes_features_from_the_dataset(reach_data, tmp_path, monkeypatch):
    import training.imitation.trainer as trainer_module
    from apps.evaluation import load_for_evaluation

    def no_env(*_):
        raise AssertionError("an env was built although env is null")

    monkeypatch.setattr(trainer_module, "probe_env", no_env)
    monkeypatch.setattr(trainer_module, "make_eval_envs", no_env)
    cfg = make_cfg(reach_data, "mlp", env=None, steps=4, eval={"final_episodes": 5})
    assert cfg.env is None
    result = train(cfg, tmp_path / "run")
    assert result.step == 4 and result.final_eval is None
    saved = read_imitation_checkpoint(tmp_path / "run")
    assert saved.config.env is None
    info = json.loads((reach_data / "meta" / "info.json").read_text())["features"]
    trained = saved.load_policy("cpu").config
    observed = {k: v["shape"] for k, v in info.items() if k.startswith("observation.")}
    assert "observation.state" in observed and trained.input_features == observed
    assert trained.output_features == {"action": info["action"]["shape"]}
    with pytest.raises(ValueError, match="trained without an env .*no simulator to evaluate it in"):
        load_for_evaluation(tmp_path / "run")


def test_without_an_env_evaluation_settings_are_refused(reach_data, tmp_path):
    with pytest.raises(ValueError, match="eval.every_steps=5 evaluates in simulation, but env is null"):
        make_cfg(reach_data, "mlp", env=None, eval={"every_steps": 5})
    with pytest.raises(ValueError, match="objective=eval/success_rate needs an evaluation in simulation"):
        make_cfg(reach_data, "mlp", env=None, objective="eval/success_rate", eval={"final_episodes": 5})
    cfg = make_cfg(reach_data, "mlp", env=None)
    with pytest.raises(ImitationSetupError, match=r"no evaluation in simulation, but \['eval.final_episodes=5'\]"):
        run(cfg, tmp_path / "run", overrides=["env=none", "eval.final_episodes=5"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path, value, message", [
    ("policy.optimizer_lr", float("nan"), "policy.optimizer_lr=nan is not a finite number"),
    ("policy.optimizer_lr", float("inf"), "policy.optimizer_lr=inf is not a finite number"),
    ("policy.optimizer_lr", -1.0, "optimizer_lr must be > 0"),
    ("optim.eps", float("nan"), "optim.eps=nan is not a finite number"),
    ("optim.grad_clip_norm", float("-inf"), "optim.grad_clip_norm=-inf is not a finite number"),
    ("max_train_seconds", float("nan"), "max_train_seconds=nan is not a finite number"),
])
def test_non_finite_and_negative_numbers_are_refused(reach_data, path, value, message):
    cfg = make_cfg(reach_data, "mlp")
    *parents, name = path.split(".")
    node = cfg
    for parent in parents:
        node = getattr(node, parent)
    setattr(node, name, value)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        cfg.validate()


def test_shape_hint_names_image_size_only_for_cameras():
    from types import SimpleNamespace

    from envs.config import EnvConfig
    from training.imitation.checks import check_env_fits_policy

    def policy(key, shape):
        return SimpleNamespace(input_specs={key: SimpleNamespace(shape=shape)}, action_spec=SimpleNamespace(shape=(3,)))

    env = EnvConfig(id="cerebellum/Reach-v0")
    with pytest.raises(ImitationSetupError, match=r"\(4,\) in the env\. Set env") as state:
        check_env_fits_policy(policy("observation.state", (6,)), env, {"observation.state": (4,), "action": (3,)})
    assert "image_size" not in str(state.value).split(". Set")[0]
    with pytest.raises(ImitationSetupError, match=r"\(3, 64, 64\) in the env \(image_size / cameras differ\?\)"):
        check_env_fits_policy(policy("observation.images.top", (3, 96, 96)), env,
                              {"observation.images.top": (3, 64, 64), "action": (3,)})


def test_policy_config_alone_refuses_non_finite_numbers():
    from policies.factory import make_policy_config

    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"MLPConfig.optimizer_lr must be a finite number, got {value}"):
            make_policy_config("mlp", optimizer_lr=value)
    hint = r"unknown field\(s\) \['hiden_dims'\] \(did you mean 'hidden_dims' for 'hiden_dims'\?\)"
    with pytest.raises(ValueError, match=hint):
        make_policy_config("mlp", hiden_dims=[8])
