"""Record demonstrations: roll out a policy in any registered Gymnasium env (vectorized) into a dataset.

Determinism and resume: attempt ``a`` always runs with env seed ``seed + a`` and attempts are accepted in
attempt order (whatever sub-env finishes first), so the dataset is "the first N accepted attempts" for any
``n_envs``. A resumed collection restarts right after the last committed attempt (read back from the
per-episode ``seed`` column) and reproduces exactly the episodes an uninterrupted run would have kept.
"""

import dataclasses
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np

from envs.config import EnvConfig, accepts_our_options, check_foreign_options
from envs.modules import import_object, import_user_module
from training.datasets.env_factory import EnvFactory
from training.datasets.format import COLLECTION_PATH, INFO_PATH, IMAGE_PREFIX
from training.datasets.observations import ObservationMapping, ObservationMappingError, action_shape
from training.datasets.reader import DatasetMeta
from training.datasets.video import VideoConfig
from training.datasets.writer import DatasetWriter
from training.progress import Progress

# Fields that must agree between an interrupted collection and its resumption.
_RESUME_FIELDS = ("env_id", "env_kwargs", "policy_factory", "seed", "keep_only_successful", "record_state", "cameras",
                  "task")


@dataclass
class CollectConfig:
    """What to record and where; mirrored by configs/collect.yaml."""

    env_id: str = "cerebellum/TransferCube-v0"
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    import_modules: List[str] = field(default_factory=lambda: ["envs"])  # imported first so env ids register
    # "module:attr" of a factory called with a local, unstepped env instance and returning a policy:
    # a callable (single observation dict -> action) with an optional reset() called at every episode start.
    policy_factory: str = "envs.experts:make_expert"
    n_episodes: int = 50
    n_envs: int = 1
    keep_only_successful: bool = True
    record_state: bool = True  # agent_pos / environment_state -> observation.state / observation.environment_state
    cameras: List[str] = field(default_factory=list)  # keys of obs["pixels"] to record as videos
    # The shared observation mapping (training/datasets/observations.py), as in the env config: the camera name of an
    # env whose obs["pixels"] is one HxWx3 array (gym-pusht), and other Dict observation keys -> LeRobot keys
    # (e.g. {qpos: observation.state}; null leaves a key out).
    pixels_camera: str = "top"
    obs_key_map: Dict[str, Any] = field(default_factory=dict)
    output_dir: str = "data/transfer_cube_expert"
    seed: int = 0
    task: Optional[str] = None  # task description stored in meta/tasks.parquet (default: the env id)
    fps: Optional[int] = None  # default: env.unwrapped.control_hz, else metadata["render_fps"]
    commit_every: int = 10  # episodes per atomic commit (and per data/video file)
    max_attempts: Optional[int] = None  # give up after this many rollouts (default 3 * n_episodes + n_envs)
    vector_mode: str = "auto"  # "sync", "async", or "auto" (async when n_envs > 1)
    # Start method of async workers. "spawn" is the safe default: a forked worker inherits the parent's
    # OpenGL/EGL contexts and held thread locks, which deadlocks MuJoCo rendering in the child.
    worker_start_method: str = "spawn"
    resume: bool = True  # continue an existing dataset at output_dir instead of refusing
    progress: bool = True
    video: VideoConfig = field(default_factory=VideoConfig)
    # The `env` group of train/eval (`env=gym_pusht`, `env=transfer_cube`): when given, it sets env_id, env_kwargs,
    # import_modules, pixels_camera and obs_key_map exactly as make_env would build that env, so the dataset and a
    # policy trained with the same `env=` agree. null: the fields above.
    env: Optional[EnvConfig] = None

    def apply_env(self) -> None:
        """Fill the env fields from `env` (once; a no-op without it). Refuses env_id/env_kwargs that disagree."""
        if self.env is None:
            return
        env = EnvConfig.from_any(self.env)
        if self.env_id not in (env.id, CollectConfig.env_id):
            raise ValueError(f"env_id={self.env_id!r} and env.id={env.id!r}: give the env once, as env=<config> "
                             f"(with env.id=...) or as env_id")
        if dict(self.env_kwargs) not in ({}, {"obs_mode": "state"}, self._env_kwargs(env)):
            raise ValueError(f"env_kwargs={dict(self.env_kwargs)} with env={env.id}: give constructor arguments in "
                             f"env.kwargs (or our options as env.obs_mode, env.cameras, ...), not env_kwargs")
        self.env_id = env.id
        self.env_kwargs = self._env_kwargs(env)
        # `envs` too: the default registers our tasks and a recording must not depend on which modules are listed.
        self.import_modules = list(dict.fromkeys(["envs", *env.import_modules]))
        self.pixels_camera, self.obs_key_map = env.pixels_camera, dict(env.obs_key_map)
        self.env = env

    @staticmethod
    def _env_kwargs(env: EnvConfig) -> Dict[str, Any]:
        """What make_env passes to gymnasium.make for this config, as plain JSON values (the collection record)."""
        _import_modules(env.import_modules, "env.import_modules")
        if env.id in gym.registry and accepts_our_options(env.id):
            kwargs = env.make_kwargs()
            kwargs["randomization"] = dataclasses.asdict(env.randomization)
            return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        if env.id in gym.registry:
            check_foreign_options(env)
        kwargs = dict(env.kwargs)
        if env.max_episode_steps is not None:
            kwargs["max_episode_steps"] = env.max_episode_steps
        return kwargs

    def validate(self) -> None:
        """Every check that needs no env or file written: values, names and the output path (an `env` config's
        modules are imported, to tell our tasks from foreign envs)."""
        self.apply_env()
        for name in ("n_episodes", "n_envs", "commit_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or null, got {self.max_attempts}")
        if self.fps is not None and self.fps < 1:
            raise ValueError(f"fps must be >= 1 or null (the env's control rate), got {self.fps}")
        if not isinstance(self.env_id, str) or not self.env_id.strip():
            raise ValueError(f"env_id must name a registered Gymnasium env, got {self.env_id!r}")
        module, sep, attr = str(self.policy_factory).partition(":")
        if not (sep and module and attr):
            raise ValueError(f"policy_factory must be 'module:attribute' (e.g. envs.experts:make_expert), got "
                             f"{self.policy_factory!r}")
        if self.vector_mode not in VECTOR_MODES:
            raise ValueError(f"vector_mode must be one of {VECTOR_MODES}, got {self.vector_mode!r}")
        if self.worker_start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"worker_start_method must be one of {multiprocessing.get_all_start_methods()}, got "
                             f"{self.worker_start_method!r}")
        cameras = list(self.cameras)
        if any(not isinstance(c, str) or not c for c in cameras) or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct camera names (keys of obs['pixels']), got {cameras}")
        if not self.record_state and not cameras:
            raise ValueError("nothing to record: record_state=false and no cameras")
        if not 0 <= self.video.crf <= 63 or self.video.gop < 1 or not (self.video.preset is None
                                                                        or 0 <= self.video.preset <= 13):
            raise ValueError(f"video.crf must be in [0, 63], video.gop >= 1 and video.preset in [0, 13] or null; "
                             f"got {self.video.crf}, {self.video.gop}, {self.video.preset}")
        _check_output_dir(Path(self.output_dir))

    def resolve(self) -> Any:
        """Import `import_modules` and the policy factory and check the env id: the policy factory, or a
        ValueError naming what cannot be found."""
        _import_modules(self.import_modules, "import_modules")
        try:
            factory = import_object(self.policy_factory, "policy_factory")
        except (ImportError, AttributeError) as err:
            raise ValueError(str(err)) from None
        if not callable(factory):
            raise ValueError(f"policy_factory {self.policy_factory!r} is not callable")
        if self.env_id not in gym.registry:
            raise ValueError(f"env id {self.env_id!r} is not registered (import_modules={list(self.import_modules)}); "
                             f"add the package that registers it to import_modules")
        return factory


VECTOR_MODES = ("auto", "sync", "async")


def _import_modules(names: List[str], what: str) -> None:
    """Import the user's modules (installed, else from the current directory); a missing one is a ValueError."""
    for module in names:
        try:
            import_user_module(module, what)
        except ImportError as err:
            raise ValueError(str(err)) from None


def _check_output_dir(root: Path) -> None:
    """The dataset directory must be one that can be created and written, before any episode is rolled out."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"output_dir={str(root)!r} is a file, not a directory")
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output_dir={str(root)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir={str(root)!r} cannot be written: {str(existing)!r} is not writable")


@dataclass
class CollectResult:
    root: Path
    episodes: int  # episodes in the dataset at the end
    recorded: int  # episodes added by this call
    attempts: int  # rollouts finished by this call
    successes: int  # successful rollouts among them
    physics_errors: int
    frames: int  # frames added by this call
    seconds: float


def env_fps(env: gym.Env, override: Optional[int] = None) -> int:
    fps = override or getattr(env.unwrapped, "control_hz", None) or env.metadata.get("render_fps")
    if not fps:
        raise ValueError("cannot tell the env's control rate: set fps in the collect config")
    if abs(fps - round(fps)) > 1e-9:
        raise ValueError(f"LeRobot datasets need an integer fps, the env runs at {fps} Hz; set fps explicitly")
    return int(round(fps))


def _names(env: gym.Env, attr: str, size: int) -> Optional[List[str]]:
    names = getattr(env.unwrapped, attr, None)
    return list(names) if names is not None and len(names) == size else None


def features_from_env(env: gym.Env, record_state: bool, cameras: List[str], pixels_camera: str = "top",
                      obs_key_map: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Dataset features of an env, placed by the shared observation mapping (gym-aloha / gym-pusht conventions and
    `obs_key_map`): with record_state its vectors (observation.state first), then the listed cameras, then action."""
    mapping = _mapping(pixels_camera, obs_key_map)
    try:
        specs = mapping.features(env.observation_space)
    except ObservationMappingError as err:
        raise ValueError(f"{err} (for collect.py, the options are obs_key_map and pixels_camera)") from None
    features: Dict[str, Dict[str, Any]] = {}
    if record_state:
        if "observation.state" not in specs:
            raise ValueError(f"record_state needs obs['agent_pos'] (or a key mapped to observation.state in "
                             f"obs_key_map); the env observes {list(env.observation_space.spaces)}")
        for key, spec in specs.items():
            if not spec.is_image:
                names = _names(env, "joint_names", spec.shape[0]) if key == "observation.state" else None
                features[key] = spec.dataset_feature(names)
    if cameras:
        available = [spec.camera for spec in specs.values() if spec.is_image]
        missing = [c for c in cameras if c not in available]
        if missing:
            raise ValueError(
                f"cameras {missing} are not in obs['pixels'] (available: {available}); "
                "create the env with a pixels obs_mode and those cameras (a single obs['pixels'] image is "
                "recorded as pixels_camera)"
            )
        for cam in cameras:
            features[f"{IMAGE_PREFIX}{cam}"] = specs[f"{IMAGE_PREFIX}{cam}"].dataset_feature()
    if not features:
        raise ValueError("nothing to record: enable record_state or list cameras")
    try:
        (a_dim,) = action_shape(env.action_space, f"env {getattr(env.spec, 'id', '?')}")
    except ObservationMappingError as err:
        raise ValueError(str(err)) from None
    features["action"] = {"dtype": "float32", "shape": [a_dim], "names": _names(env, "action_names", a_dim)}
    features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    return features


def _mapping(pixels_camera: str, obs_key_map: Optional[Dict[str, Any]]) -> ObservationMapping:
    try:
        return ObservationMapping.from_env_config({"pixels_camera": pixels_camera, "obs_key_map": obs_key_map or {}})
    except ObservationMappingError as err:
        raise ValueError(str(err)) from None


def _collection_record(cfg: CollectConfig, fps: int, env: gym.Env) -> Dict[str, Any]:
    record = {name: getattr(cfg, name) for name in _RESUME_FIELDS}
    record.update({"import_modules": list(cfg.import_modules), "fps": fps, "recorder": "cerebellum.collect/1",
                   "pixels_camera": cfg.pixels_camera, "obs_key_map": dict(cfg.obs_key_map)})
    units = getattr(env.unwrapped, "action_units", None)
    if units is not None:
        record["action_units"] = list(units) if not isinstance(units, str) else units
    return record


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


def _check_resumable(root: Path, record: Dict[str, Any], features: Dict[str, Any]) -> DatasetMeta:
    meta = DatasetMeta(root)
    previous = meta.collection
    if previous is None:
        raise ValueError(f"{root} holds a dataset this collector did not record ({COLLECTION_PATH} missing); "
                         "choose a new output_dir")
    diffs = [f"{k}: dataset has {previous.get(k)!r}, config has {record[k]!r}"
             for k in _RESUME_FIELDS if _normalize(previous.get(k)) != _normalize(record[k])]
    if diffs:
        raise ValueError(f"cannot resume {root}: the collection settings changed ({'; '.join(diffs)}); "
                         "use the original settings or a new output_dir")
    recorded = {k: (v["dtype"], list(v["shape"])) for k, v in meta.features.items() if k in features}
    wanted = {k: (v["dtype"], list(v["shape"])) for k, v in features.items()}
    if recorded != wanted:
        raise ValueError(f"cannot resume {root}: the env now yields features {wanted}, the dataset has {recorded}")
    return meta


def _slot_observation(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: _slot_observation(v, i) for k, v in obs.items()}
    return obs[i]


def _info_value(info: Dict[str, Any], key: str, i: int, default: Any) -> Any:
    if key in info and info.get(f"_{key}", np.ones(i + 1, bool))[i]:
        return info[key][i]
    return default


class _Episode:
    """Frames of one rollout in progress (dataset keys, HWC images)."""

    def __init__(self, attempt: int, features: Dict[str, Any], mapping: ObservationMapping):
        self.attempt = attempt
        self.mapping = mapping
        self.keys = [k for k in features if k.startswith("observation.")]  # the observations recorded
        self.columns: Dict[str, list] = {}
        self.success = False
        self.physics_error: Optional[str] = None

    def add(self, obs: Dict[str, Any], action: np.ndarray, reward: float, done: bool, success: bool) -> None:
        mapped = self.mapping(obs, channel_first=False)  # HWC frames, as the video writer takes them
        frame: Dict[str, Any] = {k: mapped[k] for k in self.keys}
        frame.update({"action": action, "next.reward": reward, "next.done": done, "next.success": success})
        for k, v in frame.items():
            self.columns.setdefault(k, []).append(v)
        self.success = self.success or bool(success)

    def arrays(self, features: Dict[str, Any]) -> Dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.uint8 if features[k]["dtype"] == "video" else features[k]["dtype"])
                for k, v in self.columns.items() if k in features}


def _make_vector_env(cfg: CollectConfig, make_env: EnvFactory) -> gym.vector.VectorEnv:
    mode = cfg.vector_mode if cfg.vector_mode != "auto" else ("async" if cfg.n_envs > 1 else "sync")
    # Autoreset off: each finished sub-env is reset explicitly with the seed of the next attempt.
    autoreset = gym.vector.AutoresetMode.DISABLED
    if mode == "sync":
        return gym.vector.SyncVectorEnv([make_env] * cfg.n_envs, autoreset_mode=autoreset)
    if mode == "async":
        return gym.vector.AsyncVectorEnv([make_env] * cfg.n_envs, autoreset_mode=autoreset,
                                         context=cfg.worker_start_method)
    raise ValueError(f"vector_mode must be 'sync', 'async' or 'auto', got {cfg.vector_mode!r}")


def collect(cfg: CollectConfig) -> CollectResult:
    """Record ``cfg.n_episodes`` episodes into ``cfg.output_dir`` (resuming it if it exists)."""
    cfg.validate()
    t0 = time.perf_counter()
    factory = cfg.resolve()
    make_env = EnvFactory(cfg.env_id, dict(cfg.env_kwargs), list(cfg.import_modules))
    try:
        probe = make_env()  # local and never stepped: features, fps and the per-slot policies come from it
    except TypeError as err:  # an env_kwargs key the env does not take
        raise ValueError(f"cannot build {cfg.env_id} with env_kwargs={dict(cfg.env_kwargs)}: {err}") from None
    cameras = list(cfg.cameras)
    features = features_from_env(probe, cfg.record_state, cameras, cfg.pixels_camera, dict(cfg.obs_key_map))
    mapping = _mapping(cfg.pixels_camera, dict(cfg.obs_key_map))
    fps = env_fps(probe, cfg.fps)
    record = _collection_record(cfg, fps, probe)
    if record["task"] is None:
        record["task"] = cfg.env_id
    task = record["task"]
    root = Path(cfg.output_dir)
    if (root / INFO_PATH).exists():
        if not cfg.resume:
            raise FileExistsError(f"{root} already holds a dataset and resume=false")
        meta = _check_resumable(root, record, features)
        writer = DatasetWriter.open(root, video=cfg.video, commit_every=cfg.commit_every)
        seeds = meta.episode_column("seed") if writer.committed_episodes else np.zeros(0)
        next_attempt = int(seeds.max()) - cfg.seed + 1 if len(seeds) else 0
    else:
        writer = DatasetWriter.create(root, fps, features, video=cfg.video, commit_every=cfg.commit_every,
                                      stats_seed=cfg.seed, collection=record)
        next_attempt = 0
    start_episodes = writer.num_episodes
    result = CollectResult(root, start_episodes, 0, 0, 0, 0, 0, 0.0)
    if writer.num_episodes >= cfg.n_episodes:
        writer.close()  # releases the dataset's lock
        probe.close()
        result.seconds = time.perf_counter() - t0
        return result
    max_attempts = cfg.max_attempts or 3 * cfg.n_episodes + cfg.n_envs
    policies = [factory(probe) for _ in range(cfg.n_envs)]
    envs = _make_vector_env(cfg, make_env)
    bar = Progress(cfg.n_episodes, f"collect {cfg.env_id}", unit="episode", enabled=cfg.progress,
                   initial=writer.num_episodes)
    slots: List[Optional[_Episode]] = [None] * cfg.n_envs
    finished: Dict[int, _Episode] = {}
    next_resolve = next_start = next_attempt
    try:
        def start(mask: np.ndarray) -> Any:
            nonlocal next_start
            seeds: List[Optional[int]] = []
            for i in range(cfg.n_envs):
                if mask[i]:
                    slots[i] = _Episode(next_start, features, mapping)
                    seeds.append(cfg.seed + next_start)
                    next_start += 1
                    if hasattr(policies[i], "reset"):
                        policies[i].reset()
                else:
                    seeds.append(None)
            obs, _ = envs.reset(seed=seeds, options={"reset_mask": mask})
            return obs

        obs = start(np.ones(cfg.n_envs, bool))
        current = [_slot_observation(obs, i) for i in range(cfg.n_envs)]
        while writer.num_episodes < cfg.n_episodes:
            actions = np.stack([np.asarray(policies[i](current[i]), np.float32) for i in range(cfg.n_envs)])
            obs, reward, terminated, truncated, info = envs.step(actions)
            done = np.logical_or(terminated, truncated)
            for i, episode in enumerate(slots):
                success = bool(_info_value(info, "is_success", i, False))
                episode.add(current[i], actions[i], float(reward[i]), bool(done[i]), success)
                error = _info_value(info, "physics_error", i, None)
                if error:
                    episode.physics_error = str(error)
                current[i] = _slot_observation(obs, i)
                if done[i]:
                    finished[episode.attempt] = episode
                    result.attempts += 1
                    result.successes += int(episode.success)
                    result.physics_errors += int(episode.physics_error is not None)
            # Accept finished attempts strictly in attempt order so the dataset never depends on n_envs.
            while next_resolve in finished and writer.num_episodes < cfg.n_episodes:
                episode = finished.pop(next_resolve)
                next_resolve += 1
                accepted = episode.physics_error is None and (episode.success or not cfg.keep_only_successful)
                if accepted:
                    arrays = episode.arrays(features)
                    writer.add_episode(arrays, task, extra={"seed": cfg.seed + episode.attempt,
                                                            "success": episode.success})
                    result.recorded += 1
                    result.frames += len(arrays["action"])
                bar.update(int(accepted), attempts=next_resolve - next_attempt,
                           success=f"{result.successes}/{result.attempts}")
            if writer.num_episodes >= cfg.n_episodes:
                break
            if next_resolve - next_attempt >= max_attempts:
                raise RuntimeError(
                    f"gave up after {next_resolve - next_attempt} rollouts with only {writer.num_episodes} of "
                    f"{cfg.n_episodes} episodes accepted ({result.successes} successes, "
                    f"{result.physics_errors} physics errors); raise max_attempts or check the policy"
                )
            if done.any():
                # Finished sub-envs start the next attempts right away; extra attempts beyond the last
                # needed one are simply never accepted.
                obs = start(done)
                for i in np.flatnonzero(done):
                    current[i] = _slot_observation(obs, i)
        writer.close()
    except BaseException:
        writer.abort()  # committed episodes stay; the uncommitted batch is redone on resume
        raise
    finally:
        bar.close()
        envs.close()
        probe.close()
    result.episodes = writer.num_episodes
    result.seconds = time.perf_counter() - t0
    return result
