"""Human-readable summary of a dataset: episodes, frames, features, statistics."""

from __future__ import annotations

import numpy as np

from .reader import DatasetMeta


def _fmt(values) -> str:
    arr = np.asarray(values, np.float64).ravel()
    shown = ", ".join(f"{v:.4g}" for v in arr[:8])
    return f"[{shown}{', ...' if arr.size > 8 else ''}]"


def describe(meta: DatasetMeta, max_episodes: int = 20) -> str:
    lines = [
        f"dataset   {meta.root}",
        f"format    LeRobot {meta.info['codebase_version']}, fps {meta.fps}, robot {meta.info.get('robot_type')}",
        f"episodes  {meta.total_episodes}   frames {meta.total_frames}   tasks {meta.tasks}",
    ]
    if meta.collection:
        c = meta.collection
        lines.append(f"recorded  env {c.get('env_id')} {c.get('env_kwargs')}, policy {c.get('policy_factory')}, seed {c.get('seed')}")
    lines.append("features")
    shapes = meta.shapes(channel_first=False)
    for key, ft in meta.features.items():
        extra = ""
        if ft["dtype"] == "video" and "info" in ft:
            extra = f"  codec {ft['info'].get('video.codec')} {ft['info'].get('video.pix_fmt')}"
        names = ft.get("names")
        lines.append(f"  {key:<34} {ft['dtype']:<8} {str(shapes[key]):<14}{extra}{'  names ' + str(names) if names else ''}")
    if meta.total_episodes:
        lengths = meta.episode_lengths
        lines.append(f"episode length  min {lengths.min()}  mean {lengths.mean():.1f}  max {lengths.max()}")
        cols = [c for c in ("seed", "success") if c in meta.episodes.column_names]
        lines.append("  index  length  " + "  ".join(cols))
        for ep in range(min(meta.total_episodes, max_episodes)):
            row = meta.episode(ep)
            lines.append(f"  {ep:>5}  {row['length']:>6}  " + "  ".join(str(row[c]) for c in cols))
        if meta.total_episodes > max_episodes:
            lines.append(f"  ... {meta.total_episodes - max_episodes} more")
    if meta.stats:
        lines.append("stats")
        for key, s in meta.stats.items():
            lines.append(f"  {key}")
            for name in ("mean", "std", "min", "max", "q01", "q50", "q99", "count"):
                if name in s:
                    lines.append(f"    {name:<5} {_fmt(s[name])}")
    return "\n".join(lines)
