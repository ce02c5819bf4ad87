"""Interrupted collections (exception, SIGKILL mid-batch, SIGKILL mid-commit) resume to the exact dataset."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import toy_env_for_datasets as toy

from training.datasets import DatasetMeta, load_numeric
from apps.recording import CollectConfig, collect

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
KEYS = ["observation.state", "observation.environment_state", "action", "next.success", "index", "episode_index"]


def config(root: Path, n: int, **kw) -> CollectConfig:
    base = dict(env_id=toy.ENV_ID, import_modules=["toy_env_for_datasets"],
                policy_factory="toy_env_for_datasets:make_crashing_expert", n_episodes=n, output_dir=str(root),
                commit_every=3, progress=False, seed=11)
    base.update(kw)
    return CollectConfig(**base)


def assert_same_dataset(a: Path, b: Path) -> None:
    ma, mb = DatasetMeta(a), DatasetMeta(b)
    assert ma.total_episodes == mb.total_episodes and ma.total_frames == mb.total_frames
    assert ma.episode_column("seed").tolist() == mb.episode_column("seed").tolist()
    la, lb = load_numeric(ma, KEYS), load_numeric(mb, KEYS)
    for k in KEYS:
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)
    for k, s in ma.stats.items():
        for name, v in s.items():
            np.testing.assert_allclose(v, mb.stats[k][name], rtol=1e-12, err_msg=f"{k} {name}")


def assert_clean(root: Path) -> None:
    assert not (root / ".staging").exists() and not (root / ".commit-journal.json").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "ds"
    toy.CrashingExpert.crash_at_episode = 10**9
    collect(config(root, 10))
    return root


def test_resume_after_exception_is_exact(tmp_path, reference):
    root = tmp_path / "ds"
    toy.CrashingExpert.started = 0
    toy.CrashingExpert.crash_at_episode = 9
    try:
        with pytest.raises(toy.Crash):
            collect(config(root, 10))
    finally:
        toy.CrashingExpert.crash_at_episode = 10**9
    meta = DatasetMeta(root)
    assert meta.total_episodes in (3, 6)  # whole commits only: never a partial episode or batch
    assert_clean(root)
    result = collect(config(root, 10))
    assert result.episodes == 10 and result.recorded == 10 - meta.total_episodes
    assert_same_dataset(root, reference)
    # A finished collection resumed again has nothing to do.
    assert collect(config(root, 10)).recorded == 0


def run_killed(root: Path, patch: str) -> int:
    script = textwrap.dedent(f"""
        import os, signal
        from training.datasets import atomic, writer as writer_mod
        from apps.recording import collect
        from test_dataset_resume import config
        {textwrap.indent(textwrap.dedent(patch), '        ').strip()}
        collect(config(__import__("pathlib").Path({str(root)!r}), 10))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc.returncode


@pytest.mark.slow
def test_resume_after_sigkill_mid_batch(tmp_path, reference):
    root = tmp_path / "ds"
    run_killed(root, """
        original = writer_mod.DatasetWriter.add_episode
        def add_episode(self, *a, **k):
            if self.num_episodes == 7:  # episodes 6 staged, not committed
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *a, **k)
        writer_mod.DatasetWriter.add_episode = add_episode
    """)
    assert (root / ".staging").exists()  # the killed batch's half-written files
    meta = DatasetMeta(root)
    assert meta.total_episodes == 6
    assert (root / ".staging").exists()  # readers never delete staging: a live writer could own it
    result = collect(config(root, 10))
    assert_clean(root)
    assert result.recorded == 4
    assert_same_dataset(root, reference)


@pytest.mark.slow
def test_resume_after_sigkill_mid_commit(tmp_path, reference):
    root = tmp_path / "ds"
    run_killed(root, """
        original = atomic._roll_forward
        commits = []
        def roll_forward(root):
            commits.append(1)
            if len(commits) == 2:  # die after moving only the data file of the second commit
                import json
                journal = json.loads((root / atomic.JOURNAL_NAME).read_text())
                first = journal["files"][0]
                os.replace(root / journal["staging"] / first, root / first)
                os.kill(os.getpid(), signal.SIGKILL)
            return original(root)
        atomic._roll_forward = roll_forward
    """)
    assert (root / ".commit-journal.json").exists()
    meta = DatasetMeta(root)  # opening finishes the journaled commit
    assert meta.total_episodes == 6
    assert_clean(root)
    assert load_numeric(meta, ["action"])["action"].shape[0] == meta.total_frames
    collect(config(root, 10))
    assert_same_dataset(root, reference)


def test_resume_refuses_changed_settings(reference, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(reference, root)
    with pytest.raises(ValueError, match="seed: dataset has 11, config has 12"):
        collect(config(root, 12, seed=12))
    with pytest.raises(FileExistsError, match="resume=false"):
        collect(config(root, 12, resume=False))
