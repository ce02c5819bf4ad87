"""Benchmark: ACT from the front camera (96x96) and the joints, cerebellum/PickCube-v0, trained on visually randomized
scenes (camera pose, lights, colours) -> success over 100 evaluation episodes on the plain scene and on visually
randomized scenes that training never saw (separate seeds), minimum and mean over the training seeds.

Targets: >= 90% success for every seed; the drop under visual randomization <= 10 points. The policy never reads the
cube pose (configs/experiment/act_pick_cube_pixels.yaml). Measured in the same run: the scripted expert's own success
while the demos are recorded, and each seed's plain-scene success as the reference of its randomized one.

    MUJOCO_GL=egl python benchmarks/bench_act_pick_cube_pixels.py                     # 3 seeds, about an hour
    MUJOCO_GL=egl python benchmarks/bench_act_pick_cube_pixels.py --seeds 0
    MUJOCO_GL=egl python benchmarks/bench_act_pick_cube_pixels.py --demos 3 --seeds 0 --train-minutes 0.5 --eval-episodes 2   # smoke
"""

from imitation_target import ImitationTarget, run_benchmark  # this folder is on sys.path as a script's

SPEC = ImitationTarget(
    title="ACT front camera + joints",
    experiment="act_pick_cube_pixels",  # configs/experiment/act_pick_cube_pixels.yaml
    target=0.90,
    anchors="the state-observation quick start (cube pose read from the simulator): 96% from 150 demos",
    demos=120,
    train_minutes=12.0,
    workdir="outputs/bench/act_pick_cube_pixels",
    eval_episodes=100,
    visual_randomization=True,
)

if __name__ == "__main__":
    run_benchmark(SPEC, __doc__)
