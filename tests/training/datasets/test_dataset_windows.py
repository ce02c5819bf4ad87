"""Training windows: observation history, action chunks, padding at episode edges, image cache, loaders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_test_utils import FEATURES, H, W, make_episode

from training.datasets import (
    DatasetMeta,
    DatasetWriter,
    SchemaMismatchError,
    WindowDataset,
    make_dataloader,
    observation_to_dataset,
)
from training.datasets import image_cache

LENGTHS = (6, 3, 8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("win") / "ds"
    rng = np.random.default_rng(3)
    episodes = [make_episode(rng, n) for n in LENGTHS]
    with DatasetWriter.create(root, 10, FEATURES, commit_every=3) as writer:
        for ep in episodes:
            writer.add_episode(ep, "t")
    return root, episodes


def expected_window(values: np.ndarray, t: int, deltas: list[int]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([t + d for d in deltas])
    pad = (idx < 0) | (idx >= len(values))
    return values[np.clip(idx, 0, len(values) - 1)], pad


def test_windows_pad_by_repeating_edge_frames(dataset):
    root, episodes = dataset
    obs, act = [-2, -1, 0], [-1, 0, 1, 2, 3]
    ds = WindowDataset(root, {"observation.state": obs, "observation.environment_state": obs, "action": act})
    assert len(ds) == sum(LENGTHS)
    sample_id = 0
    for e, ep in enumerate(episodes):
        for t in range(len(ep["action"])):
            sample = ds[sample_id]
            for key, deltas in (("observation.state", obs), ("observation.environment_state", obs), ("action", act)):
                values, pad = expected_window(ep[key], t, deltas)
                np.testing.assert_array_equal(sample[key].numpy(), values, err_msg=f"{key} ep {e} t {t}")
                np.testing.assert_array_equal(sample[f"{key}_is_pad"].numpy(), pad, err_msg=f"{key} pad ep {e} t {t}")
            assert sample["episode_index"].item() == e and sample["frame_index"].item() == t
            assert sample["index"].item() == sample_id
            sample_id += 1
    # The 3-frame episode: every action chunk runs past its end, the first frame has a padded history.
    first = ds[LENGTHS[0]]
    assert first["observation.state_is_pad"].tolist() == [True, True, False]
    assert first["action_is_pad"].tolist() == [True, False, False, False, True]


def test_batched_indexing_matches_single_samples_and_contract_dtypes(dataset):
    root, _ = dataset
    ds = WindowDataset(root, {"observation.state": [-1, 0], "observation.images.top": [-1, 0], "action": list(range(4))},
                       extra_keys=["next.reward"])
    ids = [0, 5, 6, 8, 16]
    batch = ds[ids]
    for j, i in enumerate(ids):
        single = ds[i]
        for key, value in single.items():
            assert torch.equal(batch[key][j], value), key
    assert batch["observation.state"].dtype == torch.float32 and batch["observation.state"].shape == (5, 2, 3)
    assert batch["observation.images.top"].dtype == torch.uint8
    assert batch["observation.images.top"].shape == (5, 2, 3, H, W)
    assert batch["action"].shape == (5, 4, 2) and batch["action_is_pad"].dtype == torch.bool
    assert batch["next.reward"].shape == (5,)
    assert {batch[k].dtype for k in ("episode_index", "frame_index", "index")} == {torch.int64}

    loader = make_dataloader(ds, batch_size=4, shuffle=True, seed=0)
    batches = list(loader)
    assert len(batches) == len(ds) // 4
    seen = torch.cat([b["index"] for b in batches])
    assert len(set(seen.tolist())) == len(seen)  # a permutation, no repeats
    again = torch.cat([b["index"] for b in make_dataloader(ds, batch_size=4, shuffle=True, seed=0)])
    assert torch.equal(seen, again)  # seeded
    # A plain DataLoader over single samples (default collate) gives the same tensors.
    plain = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, sampler=[0, 5, 6], collate_fn=None)))
    direct = ds[[0, 5, 6]]
    assert all(torch.equal(plain[k], direct[k]) for k in direct)


def test_episode_subset_and_images_follow_their_frames(dataset):
    root, episodes = dataset
    ds = WindowDataset(root, {"observation.images.top": [0]}, episodes=[2])
    assert len(ds) == LENGTHS[2]
    decoded = torch.stack([ds[i]["observation.images.top"][0] for i in range(len(ds))]).numpy()
    original = episodes[2]["observation.images.top"].transpose(0, 3, 1, 2)
    assert np.abs(decoded.astype(np.int16) - original).mean() < 4.0


def test_image_cache_decodes_once(dataset, monkeypatch):
    root, _ = dataset
    meta = DatasetMeta(root)
    first = image_cache.load_images(meta, "observation.images.top")
    entry = image_cache.cache_entry(meta, "observation.images.top")
    assert isinstance(first, np.memmap) and entry.exists() and Path(first.filename) == entry
    assert not (root / ".cache").exists()

    def no_decoding(*args, **kwargs):
        raise AssertionError("the video was decoded again despite a valid cache")

    monkeypatch.setattr(image_cache, "decode_video", no_decoding)
    again = WindowDataset(DatasetMeta(root), {"observation.images.top": [0]})
    assert np.array_equal(np.asarray(again._arrays["observation.images.top"]), np.asarray(first))


def test_schema_mismatch_names_key_and_shapes(dataset):
    root, _ = dataset
    meta = DatasetMeta(root)
    meta.check_features({"observation.state": (3,), "observation.images.top": (3, H, W), "action": (2,)})
    with pytest.raises(SchemaMismatchError, match=r"'observation.state' has shape \(3,\) in the dataset, expected \(7,\)"):
        meta.check_features({"observation.state": (7,)})
    with pytest.raises(SchemaMismatchError, match="'observation.images.wrist' is missing"):
        meta.check_features({"observation.images.wrist": (3, H, W)})
    with pytest.raises(SchemaMismatchError, match="observation.velocity"):
        WindowDataset(root, {"observation.velocity": [0]})


def test_observation_to_dataset_keys():
    obs = {
        "agent_pos": np.arange(3, dtype=np.float64),
        "environment_state": np.ones(2),
        "pixels": {"top": np.zeros((4, 6, 3), np.uint8)},
    }
    out = observation_to_dataset(obs)
    assert out["observation.state"].dtype == np.float32 and out["observation.state"].tolist() == [0, 1, 2]
    assert out["observation.environment_state"].shape == (2,)
    assert out["observation.images.top"].shape == (3, 4, 6) and out["observation.images.top"].dtype == np.uint8
    batched = observation_to_dataset({"pixels": {"top": np.zeros((5, 4, 6, 3), np.uint8)}})
    assert batched["observation.images.top"].shape == (5, 3, 4, 6)
    with pytest.raises(ValueError, match="camera 'top'"):
        observation_to_dataset({"pixels": {"top": np.zeros((4, 6, 3), np.float32)}})
