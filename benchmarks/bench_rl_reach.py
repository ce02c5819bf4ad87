"""Benchmark: PPO and SAC on cerebellum/Reach-v0 within a wall-clock training budget, and domain randomization.

Claims (issue 5), each trained from the tuned configs (configs/algo/tuned/<algo>_reach.yaml) and evaluated on 200
seeded episodes (success rate with a 95% Wilson interval):
  ppo:  PPO reaches >= 95% success within 10 minutes of training;
  sac:  SAC reaches >= 95% success within 15 minutes;
  dr:   PPO trained with domain randomization on, evaluated with and without randomization.
The same-run reference is the scripted expert (envs.experts) on the same 200 evaluation seeds.

    python benchmarks/bench_rl_reach.py                       # all three (about 40 minutes on 2 cores)
    python benchmarks/bench_rl_reach.py --parts ppo --ppo-seconds 120 --episodes 50      # a short version
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from envs.config import make_env  # noqa: E402
from envs.experts import make_expert  # noqa: E402
from apps.evaluation import EvaluateConfig, evaluate_checkpoint  # noqa: E402
from training.evaluation import evaluate, make_eval_envs  # noqa: E402
from training.rl.config import finalize, register_configs  # noqa: E402
from training.rl.trainer import train  # noqa: E402

EVAL_SEED = 100_000
TARGET = 0.95


def compose_cfg(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return finalize(OmegaConf.to_object(compose("train_rl", overrides=overrides)))


def train_and_eval(name: str, algo: str, seconds: float, episodes: int, out: Path, randomized: bool,
                   eval_randomization: list[bool]) -> dict:
    cfg = compose_cfg([
        # total_timesteps stays the tuned one (it sets the learning-rate decay); the time budget may end training first.
        "env=reach", f"algo={algo}", f"max_train_seconds={seconds}",
        f"env.randomization.enabled={str(randomized).lower()}", "eval.every_steps=0", "eval.final_episodes=0",
        "checkpoint.every_steps=0", "logger.mode=disabled", "progress_bar=false",
    ])
    result = train(cfg, out / name)
    row = {"part": name, "algo": algo, "train_randomization": randomized, "budget_s": seconds,
           "train_seconds": round(result.train_seconds, 1), "timesteps": result.num_timesteps, "evals": {}}
    for rand in eval_randomization:
        ev = evaluate_checkpoint(
            EvaluateConfig(checkpoint=str(result.checkpoint), episodes=episodes, seed=EVAL_SEED, n_envs=8,
                           video_episodes=1, randomization=rand),
            out / name / f"eval_randomization_{str(rand).lower()}",
        )
        low, high = ev.success_ci95
        row["evals"][f"randomization={rand}"] = {"success_rate": ev.success_rate, "ci95": [low, high],
                                                 "mean_return": ev.mean_return}
        print(f"[{name}] {algo} trained {result.train_seconds:.0f} s ({result.num_timesteps} steps, randomization "
              f"{'on' if randomized else 'off'}); eval randomization {'on' if rand else 'off'}: {ev.summary()}",
              flush=True)
    return row


def expert_reference(episodes: int, randomized: bool) -> dict:
    cfg = compose_cfg(["env=reach", f"env.randomization.enabled={str(randomized).lower()}"]).env
    envs = make_eval_envs(cfg, 8)
    local = make_env(cfg)
    result = evaluate(envs, [make_expert(local) for _ in range(8)], episodes=episodes, seed=EVAL_SEED)
    envs.close()
    print(f"[reference] scripted expert, randomization {'on' if randomized else 'off'}: {result.summary()}", flush=True)
    return {"success_rate": result.success_rate, "ci95": list(result.success_ci95), "mean_return": result.mean_return}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="ppo,sac,dr", help="comma list of ppo, sac, dr")
    parser.add_argument("--ppo-seconds", type=float, default=600.0)
    parser.add_argument("--sac-seconds", type=float, default=900.0)
    parser.add_argument("--dr-seconds", type=float, default=600.0)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "rl_reach" / time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    out = Path(args.out)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"ppo", "sac", "dr"})
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from ppo, sac, dr")
    print(f"bench_rl_reach: {os.cpu_count()} CPUs visible, load average {os.getloadavg()}, output {out}", flush=True)

    rows, reference = [], {"randomization=False": expert_reference(args.episodes, False)}
    if "dr" in parts:
        reference["randomization=True"] = expert_reference(args.episodes, True)
    if "ppo" in parts:
        rows.append(train_and_eval("ppo", "ppo", args.ppo_seconds, args.episodes, out, False, [False]))
    if "sac" in parts:
        rows.append(train_and_eval("sac", "sac", args.sac_seconds, args.episodes, out, False, [False]))
    if "dr" in parts:
        rows.append(train_and_eval("dr", "ppo", args.dr_seconds, args.episodes, out, True, [False, True]))

    print("\npart  algo  budget_s  steps      eval                    success  95% CI          target")
    for row in rows:
        for key, ev in row["evals"].items():
            target = f">= {TARGET:.0%}" if row["part"] in ("ppo", "sac") else "report"
            print(f"{row['part']:<5} {row['algo']:<5} {row['budget_s']:<9.0f} {row['timesteps']:<10d} {key:<23} "
                  f"{ev['success_rate']:<8.1%} {ev['ci95'][0]:.1%}-{ev['ci95'][1]:.1%}  {target}")
    for key, ref in reference.items():
        print(f"reference: scripted expert, {key}: {ref['success_rate']:.1%} "
              f"({ref['ci95'][0]:.1%}-{ref['ci95'][1]:.1%})")
    print(f"load average at the end: {os.getloadavg()}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "reference": reference, "args": vars(args)}, indent=2))
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
