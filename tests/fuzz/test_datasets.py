"""Fuzz: byte flips and truncations of every dataset and checkpoint file end in a clear error naming the file.

Each case corrupts one file of a fresh copy, then runs everything that reads it: the reader (metadata, every numeric
column, every camera frame), the appending writer (it reads the stats state) and inspect_dataset --verify; for
checkpoints (imitation and RL), reading and loading the policy, the trainer state and the normalization. Every case must raise a ValueError (or a subclass)
whose message names the corrupted file (the verifier must list it among its problems), within a time cap: no
silent wrong load, no hang.
"""

from __future__ import annotations

import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

DATASET_TESTS = Path(__file__).resolve().parents[1] / "training" / "datasets"
sys.path.insert(0, str(DATASET_TESTS))

import toy_env_for_datasets as toy  # noqa: E402
from dataset_test_utils import flip, value_bytes_offset  # noqa: E402

from training.datasets import DatasetMeta, DatasetWriter, load_images, load_numeric  # noqa: E402
from apps.recording import CollectConfig, collect  # noqa: E402
from training.datasets.verify import verify_dataset  # noqa: E402

CAMERA = "observation.images.top"
DATASET_FILES = {
    "data_parquet": ("data/chunk-000/file-001.parquet", "action"),
    "episodes_parquet": ("meta/episodes/chunk-000/file-000.parquet", "length"),
    "tasks_parquet": ("meta/tasks.parquet", "task_index"),
    "info_json": ("meta/info.json", None),
    "stats_json": ("meta/stats.json", None),
    "checksums_json": ("meta/checksums.json", None),
    "video_mp4": (f"videos/{CAMERA}/chunk-000/file-001.mp4", None),
    "collection_json": ("meta/cerebellum_collection.json", None),
    "stats_state_npz": ("meta/cerebellum_stats_state.npz", None),
}
CHECKPOINT_FILES = ("checkpoint.json", "config.yaml", "policy/config.json", "policy/model.safetensors",
                    "trainer_state.json", "trainer_state.safetensors", "dataset_stats.json")


def _flip_cases(value_column: str | None) -> dict[str, tuple]:
    cases = {
        "flip_first_byte": ("flip", 0, 1, 0xFF),
        "flip_middle_byte": ("flip", "middle", 1, 0xFF),
        "flip_last_byte": ("flip", -1, 1, 0xFF),
        "flip_middle_bit": ("flip", "middle", 1, 0x01),  # keeps text ASCII: a digit becomes another digit
        "flip_64_bytes": ("flip", "middle", 64, 0xFF),  # the reported case
    }
    if value_column is not None:
        cases["flip_value_bytes"] = ("flip", "values", 8, 0xFF)  # inside the data pages: values, not structure
    return cases


TRUNCATIONS = {"truncate_to_0": 0, "truncate_to_half": "half", "truncate_minus_1": -1}


def mutate(path: Path, spec, value_column: str | None = None) -> None:
    size = path.stat().st_size
    if spec[0] == "flip":
        _, where, count, mask = spec
        offset = {"middle": size // 2, "values": None}.get(where, where) if isinstance(where, str) else where
        if where == "values":
            offset = value_bytes_offset(path, value_column)
        flip(path, offset, count, mask)
    else:
        keep = {0: 0, "half": size // 2, -1: size - 1}[spec[1]]
        with open(path, "r+b") as f:
            f.truncate(keep)


def _cases(files: dict[str, tuple]) -> list:
    out = []
    for kind, (rel, column) in files.items():
        for name, spec in _flip_cases(column).items():
            out.append(pytest.param(rel, column, spec, id=f"{kind}-{name}"))
        for name, keep in TRUNCATIONS.items():
            out.append(pytest.param(rel, column, ("truncate", keep), id=f"{kind}-{name}"))
    return out


@contextmanager
def time_cap(seconds: int):
    """A hang fails the case instead of the whole suite."""

    def timeout(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Four toy episodes with state and a camera, two commits: two files of every family."""
    root = tmp_path_factory.mktemp("fuzz") / "ds"
    collect(CollectConfig(env_id=toy.ENV_ID, env_kwargs={"obs_mode": "state_pixels", "image_size": [32, 32],
                                                         "max_episode_steps": 12},
                          import_modules=["toy_env_for_datasets"], policy_factory="toy_env_for_datasets:make_toy_expert",
                          n_episodes=4, keep_only_successful=False, cameras=["top"], commit_every=2,
                          output_dir=str(root), progress=False, seed=3))
    for rel, _ in DATASET_FILES.values():
        assert (root / rel).is_file(), rel
    return root


def read_everything(root: Path) -> None:
    meta = DatasetMeta(root)
    load_numeric(meta, meta.numeric_keys)
    load_images(meta, CAMERA, in_memory=True)
    DatasetWriter.open(root).abort()  # the appending writer reads the stats state too


def test_pristine_dataset_reads_and_verifies(pristine):
    read_everything(pristine)
    assert verify_dataset(pristine).ok


@pytest.mark.parametrize("rel, column, spec", _cases(DATASET_FILES))
def test_corrupt_dataset_file_is_refused_naming_it(pristine, tmp_path, rel, column, spec):
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    mutate(root / rel, spec, column)
    with time_cap(60):
        with pytest.raises(ValueError) as err:
            read_everything(root)
        assert str(root / rel) in str(err.value), f"{type(err.value).__name__}: {err.value}"
        report = verify_dataset(root)
    assert any(str(root / rel) in p for p in report.problems), report.problems


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny MLP trained for two steps on a state-only toy dataset (env=null: no simulator needed)."""
    from training.imitation.config import config_from_dict
    from training.imitation.trainer import train

    base = tmp_path_factory.mktemp("fuzz_ckpt")
    data = base / "ds"
    collect(CollectConfig(env_id=toy.ENV_ID, import_modules=["toy_env_for_datasets"],
                          policy_factory="toy_env_for_datasets:make_toy_expert", n_episodes=3,
                          keep_only_successful=False, output_dir=str(data), progress=False, seed=4))
    cfg = config_from_dict({
        "env": None, "policy": {"type": "mlp", "hidden_dims": [16], "chunk_size": 4, "n_action_steps": 2},
        "dataset": {"root": str(data)}, "steps": 2, "batch_size": 4, "log_every": 1,
        "eval": {"final_episodes": 0, "every_steps": 0}, "checkpoint": {"every_steps": 0},
        "logger": {"mode": "disabled"}, "progress_bar": False, "torch_threads": 1, "device": "cpu"})
    result = train(cfg, base / "run")
    for rel in CHECKPOINT_FILES:
        assert (result.checkpoint / rel).is_file(), rel
    return result.checkpoint


def load_checkpoint(path: Path) -> None:
    from training.imitation.checkpoint import read_imitation_checkpoint

    ckpt = read_imitation_checkpoint(path)
    ckpt.load_policy("cpu")
    ckpt.tensors()
    ckpt.dataset_stats()


def test_pristine_checkpoint_loads(checkpoint):
    load_checkpoint(checkpoint)


RL_CHECKPOINT_FILES = ("checkpoint.json", "config.yaml", "model.zip", "policy.safetensors", "normalization.json",
                       "trainer_state.json")


@pytest.fixture(scope="module")
def rl_checkpoint(tmp_path_factory):
    """PPO on Reach for 64 steps: every file an RL checkpoint holds."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from training.rl.config import finalize, register_configs
    from training.rl.trainer import train

    register_configs()
    repo = Path(__file__).resolve().parents[2]
    overrides = ["env=reach", "env.max_episode_steps=20", "algo=ppo", "algo.net_arch=[8]", "algo.n_envs=1",
                 "algo.n_steps=32", "algo.batch_size=32", "algo.n_epochs=1", "vec_env=dummy", "progress_bar=false",
                 "logger.mode=disabled", "total_timesteps=64", "checkpoint.every_steps=0", "eval.every_steps=0",
                 "eval.final_episodes=0"]
    with initialize_config_dir(config_dir=str(repo / "configs"), version_base="1.3"):
        cfg = finalize(OmegaConf.to_object(compose("train_rl", overrides=overrides)))
    result = train(cfg, tmp_path_factory.mktemp("fuzz_rl") / "run")
    for rel in RL_CHECKPOINT_FILES:
        assert (result.checkpoint / rel).is_file(), rel
    return result.checkpoint


def load_rl_checkpoint(path: Path) -> None:
    from training.rl.checkpoint import load_policy, read_rl_checkpoint

    rl = read_rl_checkpoint(path)
    load_policy(rl)
    rl.normalizer


def test_pristine_rl_checkpoint_loads(rl_checkpoint):
    load_rl_checkpoint(rl_checkpoint)


def _checkpoint_cases(fixture: str, prefix: str, files: tuple[str, ...]) -> list:
    cases = _cases({prefix + f.replace("/", "_").replace(".", "_"): (f, None) for f in files})
    return [pytest.param(fixture, *case.values, id=case.id) for case in cases]


LOADERS = {"checkpoint": load_checkpoint, "rl_checkpoint": load_rl_checkpoint}


@pytest.mark.parametrize("fixture, rel, column, spec", _checkpoint_cases("checkpoint", "", CHECKPOINT_FILES)
                         + _checkpoint_cases("rl_checkpoint", "rl_", RL_CHECKPOINT_FILES))
def test_corrupt_checkpoint_file_is_refused_naming_it(request, tmp_path, fixture, rel, column, spec):
    source = request.getfixturevalue(fixture)
    path = tmp_path / source.name
    shutil.copytree(source, path)
    mutate(path / rel, spec, column)
    with time_cap(60):
        with pytest.raises(ValueError) as err:
            LOADERS[fixture](path)
    assert rel in str(err.value), f"{type(err.value).__name__}: {err.value}"
