"""Fuzz: concurrent writers. Two collections or two trainings into one directory, writers killed with SIGKILL and
resumed by another process, cleanup next to a live writer, concurrent cache builders and readers during commits.

Second processes are real subprocesses only where a second process is the point; the toy env keeps them light.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET_TESTS = REPO / "tests" / "training" / "datasets"
sys.path.insert(0, str(DATASET_TESTS))

import toy_env_for_datasets as toy  # noqa: E402

from training.datasets import DatasetMeta, DatasetWriter, LockHeldError, atomic, load_numeric  # noqa: E402
from apps.recording import CollectConfig, collect  # noqa: E402
from fileio.locks import owner_pid  # noqa: E402
from tests.processes import kill_9, reaped, wait_for  # noqa: E402
from training.datasets.verify import verify_dataset  # noqa: E402

pytestmark = pytest.mark.slow  # writers and trainers in child processes, killed and resumed

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(DATASET_TESTS)]), "WANDB_MODE": "disabled",
       "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def spawn(code: str, stdin: bool = False, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env={**ENV, **env},
                            stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    with reaped(proc):
        out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def collect_config(root: Path, n: int, **kw) -> CollectConfig:
    # env_kwargs as configs/collect.yaml sets them, so that scripts/collect.py meets the same collection settings.
    base = dict(env_id=toy.ENV_ID, env_kwargs={"obs_mode": "state"}, import_modules=["toy_env_for_datasets"],
                policy_factory="toy_env_for_datasets:make_slow_expert", n_episodes=n, keep_only_successful=False,
                commit_every=2, output_dir=str(root), progress=False, seed=7)
    return CollectConfig(**{**base, **kw})


def collect_code(root: Path, n: int) -> str:
    return f"""
        import toy_env_for_datasets
        from apps.recording import CollectConfig, collect
        r = collect(CollectConfig(env_id={toy.ENV_ID!r}, env_kwargs={{"obs_mode": "state"}},
                                  import_modules=["toy_env_for_datasets"],
                                  policy_factory="toy_env_for_datasets:make_slow_expert", n_episodes={n},
                                  keep_only_successful=False, commit_every=2, output_dir={str(root)!r},
                                  progress=False, seed=7))
        print("recorded", r.recorded, flush=True)
    """


def assert_complete(root: Path, n: int) -> None:
    meta = DatasetMeta(root)
    assert meta.total_episodes == n
    assert meta.episode_column("seed").tolist() == list(range(7, 7 + n))  # attempts in order, none lost or doubled
    index = load_numeric(meta, ["index"])["index"]
    assert np.array_equal(index, np.arange(meta.total_frames))
    report = verify_dataset(root)
    assert report.ok, report.problems


def committed_episodes(root: Path) -> int:
    try:
        return int(json.loads((root / "meta/info.json").read_text())["total_episodes"])
    except (OSError, ValueError, KeyError):
        return 0


# ------------------------------------------------------------------------------------------------ datasets
def test_second_collect_stops_at_once_naming_the_first_then_a_killed_writer_is_resumed(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    with reaped(spawn(collect_code(root, 30))) as first:
        wait_for(lambda: owner_pid(root) == first.pid and committed_episodes(root) >= 2, first, "first commit")
        with pytest.raises(LockHeldError, match=rf"dataset {root} is locked by pid {first.pid}\b") as err:
            collect(collect_config(root, 30))
        assert err.value.pid == first.pid
        assert first.poll() is None  # the second collection did not wait for the first one to end
        script = subprocess.run(
            [sys.executable, str(REPO / "scripts/collect.py"), f"env_id={toy.ENV_ID}",
             "import_modules=[toy_env_for_datasets]", "policy_factory=toy_env_for_datasets:make_slow_expert",
             "n_episodes=30", "keep_only_successful=false", "commit_every=2", f"output_dir={root}", "progress=false",
             "seed=7", f"hydra.run.dir={tmp_path / 'hydra'}"],
            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first collection ended before the script met it; make it longer"
        assert script.returncode == 2, script.stderr
        assert script.stderr.strip().splitlines() == [f"error: {err.value}"]
        kill_9(first)
    # The dead writer's lock file is still there, naming it; the kernel dropped its flock, so nothing blocks.
    assert owner_pid(root) == first.pid
    monkeypatch.setenv("TOY_EXPERT_SLEEP", "0")
    result = collect(collect_config(root, 30))
    assert result.episodes == 30
    assert_complete(root, 30)
    assert not (root / ".lock").exists() and not (root / atomic.STAGING_DIR).exists()


def test_two_collects_started_together_leave_one_complete_dataset(tmp_path):
    root = tmp_path / "ds"
    procs = [spawn(collect_code(root, 6)) for _ in range(2)]
    results = [finish(p) for p in procs]
    failed = [(p, r) for p, r in zip(procs, results) if r[0] != 0]
    if failed:  # the usual outcome: they overlapped
        assert len(failed) == 1, results
        loser, (_, _, err) = failed[0]
        winner = next(p for p in procs if p is not loser)
        assert f"LockHeldError: dataset {root} is locked by pid {winner.pid}" in err
    else:  # the second one started after the first had finished: it found the dataset complete
        assert sorted(r[1].strip() for r in results) == ["recorded 0", "recorded 6"], results
    assert_complete(root, 6)


STAGING_WRITER = """
    import sys
    import numpy as np
    from dataset_test_utils import STATE_FEATURES, make_episode
    from training.datasets import DatasetWriter
    w = DatasetWriter.create({root!r}, 10, STATE_FEATURES, commit_every=100)
    rng = np.random.default_rng(0)
    for _ in range(3):
        w.add_episode(make_episode(rng, 4, video=False), "t")
    print("staged", flush=True)
    sys.stdin.readline()
    w.close()
    print("closed", flush=True)
"""


def test_recover_never_deletes_a_live_writers_staging(tmp_path):
    root = tmp_path / "ds"
    with reaped(spawn(STAGING_WRITER.format(root=str(root)), stdin=True)) as writer:
        assert writer.stdout.readline().strip() == "staged", writer.stderr.read()
        staged = sorted((root / atomic.STAGING_DIR).rglob("*"))
        assert any(p.suffix == ".parquet" for p in staged) is False  # parquet files are written at commit
        assert staged, "the live writer has a staging area"
        atomic.recover(root)  # as a careless second writer would run it
        DatasetMeta(root)  # a reader meanwhile sees the last commit
        with pytest.raises(LockHeldError, match=f"pid {writer.pid}"):
            DatasetWriter.open(root)
        assert sorted((root / atomic.STAGING_DIR).rglob("*")) == staged
        writer.stdin.write("\n")
        writer.stdin.flush()
        code, out, err = finish(writer)
        assert code == 0 and out.strip() == "closed", err
    assert DatasetMeta(root).total_episodes == 3 and verify_dataset(root).ok
    assert not (root / atomic.STAGING_DIR).exists()


def test_a_dead_writers_staging_is_cleaned_by_the_next_writer(tmp_path):
    from dataset_test_utils import STATE_FEATURES, make_episode

    root = tmp_path / "ds"
    writer = spawn(STAGING_WRITER.format(root=str(root)), stdin=True)
    assert writer.stdout.readline().strip() == "staged", writer.stderr.read()
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    assert (root / atomic.STAGING_DIR).exists()
    rng = np.random.default_rng(1)
    with DatasetWriter.open(root) as w:
        assert not (root / atomic.STAGING_DIR).exists()
        w.add_episode(make_episode(rng, 5, video=False), "t")
    assert DatasetMeta(root).total_episodes == 1 and verify_dataset(root).ok
    assert list(DatasetMeta(root).features) == [*STATE_FEATURES, "timestamp", "frame_index", "episode_index",
                                                "index", "task_index"]


def test_two_processes_building_one_image_cache_entry(tmp_path):
    root, cache = tmp_path / "ds", tmp_path / "cache"
    collect(collect_config(root, 4, policy_factory="toy_env_for_datasets:make_toy_expert", cameras=["top"],
                           env_kwargs={"obs_mode": "state_pixels", "image_size": [32, 32]}))
    code = f"""
        import hashlib
        import numpy as np
        from training.datasets import DatasetMeta, load_images
        frames = load_images(DatasetMeta({str(root)!r}), "observation.images.top", cache_dir={str(cache)!r})
        print(type(frames).__name__, hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest(), flush=True)
    """
    results = [finish(p) for p in [spawn(code), spawn(code)]]
    assert [r[0] for r in results] == [0, 0], results
    outputs = {r[1].strip() for r in results}
    assert len(outputs) == 1 and next(iter(outputs)).startswith("memmap ")
    entries = sorted(p.name for p in (cache / "decoded").iterdir())
    assert len([e for e in entries if e.endswith(".npy")]) == 1 and not [e for e in entries if e.endswith(".tmp")]
    assert not (root / ".cache").exists()


def test_readers_during_commits_see_whole_commits_only(tmp_path):
    root = tmp_path / "ds"
    writer = spawn(f"""
        import time
        import numpy as np
        from dataset_test_utils import STATE_FEATURES, make_episode
        from training.datasets import DatasetWriter
        rng = np.random.default_rng(0)
        with DatasetWriter.create({str(root)!r}, 10, STATE_FEATURES, commit_every=1) as w:
            print("created", flush=True)
            for n in range(12):
                w.add_episode(make_episode(rng, 3 + n % 4, video=False), "t")
                time.sleep(0.05)
    """)
    assert writer.stdout.readline().strip() == "created", writer.stderr.read()
    reads, seen = 0, set()
    while writer.poll() is None or reads == 0:
        meta = DatasetMeta(root)
        index = load_numeric(meta, ["index", "episode_index"])
        assert np.array_equal(index["index"], np.arange(meta.total_frames))
        assert int(meta.episode_lengths.sum()) == meta.total_frames
        seen.add(meta.total_episodes)
        reads += 1
    assert writer.returncode == 0, writer.stderr.read()
    assert len(seen) > 2, seen  # the reads really interleaved with the commits
    assert DatasetMeta(root).total_episodes == 12 and verify_dataset(root).ok


# ------------------------------------------------------------------------------------------------ trainings
TRAIN_CODE = """
    from training.imitation.config import config_from_dict
    from training.imitation.trainer import train
    cfg = config_from_dict({cfg!r})
    train(cfg, {run_dir!r})
"""


def train_cfg(data: Path, steps: int) -> dict:
    return {"env": None, "policy": {"type": "mlp", "hidden_dims": [16], "chunk_size": 4, "n_action_steps": 2},
            "dataset": {"root": str(data)}, "steps": steps, "batch_size": 4, "log_every": 5,
            "eval": {"final_episodes": 0, "every_steps": 0}, "checkpoint": {"every_steps": 20, "keep_last": 2},
            "logger": {"mode": "disabled"}, "progress_bar": False, "torch_threads": 1, "device": "cpu"}


def metrics_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip().endswith("}")]


def test_second_training_into_one_run_dir_stops_naming_the_first_then_resume_truncates_metrics(tmp_path):
    from training.checkpoints import latest_checkpoint
    from training.imitation.checkpoint import latest_of_run
    from training.imitation.config import config_from_dict
    from training.imitation.trainer import run, train

    data, run_dir = tmp_path / "ds", tmp_path / "run"
    collect(collect_config(data, 3, policy_factory="toy_env_for_datasets:make_toy_expert"))
    with reaped(spawn(TRAIN_CODE.format(cfg=train_cfg(data, 10**6), run_dir=str(run_dir)))) as first:
        def logged_past_checkpoint() -> bool:
            latest = latest_checkpoint(run_dir)
            return latest is not None and max(metrics_steps(run_dir), default=0) > int(latest.name[5:])

        wait_for(logged_past_checkpoint, first, "metrics logged after a checkpoint", timeout=180)
        with pytest.raises(LockHeldError, match=rf"run directory {run_dir} is locked by pid {first.pid}\b"):
            train(config_from_dict(train_cfg(data, 100)), run_dir)
        with pytest.raises(LockHeldError, match=rf"locked by pid {first.pid}\b"):
            run(config_from_dict({**train_cfg(data, 100), "resume": str(run_dir)}), tmp_path / "unused")
        assert first.poll() is None
        kill_9(first)
    resume = latest_of_run(run_dir)
    assert max(metrics_steps(run_dir)) > resume.step  # rows the resumed run would log a second time
    result = train(resume.config, run_dir, resume=resume, should_stop=lambda step: step >= resume.step + 20)
    steps = metrics_steps(run_dir)
    assert result.step == resume.step + 20 and steps[-1] == result.step
    assert steps == sorted(set(steps)), "a step was logged twice"
    assert not (run_dir / ".lock").exists()


def test_second_rl_training_stops_naming_the_first_then_resume_truncates_progress(tmp_path):
    import csv

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from training.checkpoints import latest_checkpoint
    from training.rl.config import finalize, register_configs
    from training.rl.trainer import resume_from, train

    overrides = ["env=reach", "env.max_episode_steps=50", "algo=ppo", "algo.net_arch=[16]", "algo.n_envs=1",
                 "algo.n_steps=256", "algo.batch_size=64", "algo.n_epochs=1", "vec_env=dummy", "progress_bar=false",
                 "logger.mode=disabled", "total_timesteps=4096", "checkpoint.every_steps=512", "eval.every_steps=0",
                 "eval.final_episodes=0"]
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, str(REPO / "scripts/train_rl.py"), *overrides, f"run_dir={run_dir}",
                              f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = finalize(OmegaConf.to_object(compose("train_rl", overrides=overrides)))
    with reaped(first):
        def csv_past_checkpoint() -> bool:
            latest = latest_checkpoint(run_dir)
            path = run_dir / "progress.csv"
            if latest is None or not path.exists():
                return False
            rows = list(csv.DictReader(path.read_text().splitlines()))
            return any(float(r["time/total_timesteps"] or 0) > int(latest.name[5:]) for r in rows)

        wait_for(csv_past_checkpoint, first, "progress logged after a checkpoint", timeout=240)
        with pytest.raises(LockHeldError, match=rf"run directory {run_dir} is locked by pid {first.pid}\b"):
            train(cfg, run_dir)
        kill_9(first)
    resume = resume_from(run_dir)
    train(resume.config, run_dir, resume=resume)
    rows = list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))
    assert rows and all(float(r["time/total_timesteps"]) <= resume.checkpoint.step for r in rows)
    later = list(csv.DictReader((run_dir / f"progress_from_{resume.checkpoint.step}.csv").read_text().splitlines()))
    assert float(later[-1]["time/total_timesteps"]) == 4096


def test_torchrun_into_a_locked_run_dir_stops_every_rank_without_waiting(tmp_path):
    """Rank 0 alone takes the lock; the other ranks must learn its failure instead of waiting in a collective."""
    data, run_dir = tmp_path / "ds", tmp_path / "run"
    collect(collect_config(data, 3, policy_factory="toy_env_for_datasets:make_toy_expert"))
    holder = spawn(f"""
        import time
        from training.checkpoints import lock_run_dir
        held = lock_run_dir({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    with reaped(holder):
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "scripts/train.py"), "env=null", f"dataset.root={data}", "policy=mlp",
               "policy.hidden_dims=[16]", "policy.chunk_size=4", "policy.n_action_steps=2", "steps=10",
               "batch_size=4", "eval.final_episodes=0", "progress_bar=false", "torch_threads=1", "logger.mode=disabled",
               "device=cpu", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'hydra'}"]
        proc = subprocess.run(cmd, cwd=tmp_path, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=240)  # a deadlocked rank would wait for gloo's 2-hour timeout instead
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 2, proc.stderr[-4000:]  # one line from each rank, both naming the holder
        assert all(f"run directory {run_dir} is locked by pid {holder.pid}" in line for line in errors), errors
        assert not list(run_dir.glob("checkpoints")) and not (run_dir / "metrics.jsonl").exists()
