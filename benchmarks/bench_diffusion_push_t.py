"""Benchmark: Diffusion Policy, state observations, cerebellum/PushT-v0, >= 100 expert demos, <= 45 min of CPU
training -> success rate over the evaluation episodes (target >= 90%).

Anchor (published, other setup): the Diffusion Policy paper scores 0.91-0.95 on state-based Push-T (human demos,
GPU-scale training). Measured in the same run: the scripted expert's own success while the demos are recorded.

Hyper-parameters for one CPU core (the other is left to the rest of the machine): the default UNet (down_dims
64/128, the size that meets the 30 ms per-chunk inference target), 2 observation steps, horizon 16, DDIM with 10
steps at inference, EMA, batch 64, AdamW 1e-3 with warm-up + cosine over 30,000 steps
(configs/experiment/diffusion_push_t.yaml), or fewer where the time budget cannot fit them (the step time is measured
on this machine before training; the measured run fitted 30,515 steps, before the recipe capped them). Two choices differ from the paper's Push-T setup and were
measured here: the block yaw enters as (sin, cos) (`angle_inputs`; the paper's low-dim Push-T observes keypoints,
which have no wrap at +-pi either), and 2 executed actions per chunk instead of 8 (re-planning every 0.2 s: on one
checkpoint 82% success with 2, 78% with 4, 68% with 8 over 100 episodes). The default is 500 demos (the
issue asks for >= 100): in the same budget, 200 demos reached 82% over 100 episodes, and 500 demos reached 194/200 in
this benchmark (30,000 steps, 36.7 min of training, load ~1; an earlier run fitted to 30,515 steps: 198/200).

    MUJOCO_GL=egl python benchmarks/bench_diffusion_push_t.py                      # the full benchmark
    MUJOCO_GL=egl python benchmarks/bench_diffusion_push_t.py --demos 10 --train-minutes 1 --eval-episodes 8   # smoke
"""

from imitation_target import ImitationTarget, run_benchmark  # this folder is on sys.path as a script's

SPEC = ImitationTarget(
    title="Diffusion Policy state-only",
    experiment="diffusion_push_t",  # configs/experiment/diffusion_push_t.yaml
    target=0.90,
    anchors="Diffusion Policy paper, state Push-T: 0.91-0.95",
    demos=500,
    train_minutes=45.0,
    workdir="outputs/bench/diffusion_push_t",
    threads=1,
    budget_margin=0.85,
)

if __name__ == "__main__":
    run_benchmark(SPEC, __doc__)
