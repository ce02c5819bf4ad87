"""Benchmark: ACT from the top camera (96x96) and the joints, cerebellum/TransferCube-v0, 50 expert demos, <= 90 min of
CPU training per seed -> success over 100 evaluation episodes, minimum and mean over the training seeds (target >= 90%
for every seed).

The policy never reads the cube pose (configs/experiment/act_transfer_cube_pixels.yaml). Anchors (published, other
setups): the ACT paper reports 86% on scripted sim data from 480x640 images; LeRobot's card 83-88%. Measured in the same
run: the scripted expert's own success while the demos are recorded.

    MUJOCO_GL=egl python benchmarks/bench_act_transfer_cube_pixels.py                       # 3 seeds, hours on 2 cores
    MUJOCO_GL=egl python benchmarks/bench_act_transfer_cube_pixels.py --seeds 0             # one seed
    MUJOCO_GL=egl python benchmarks/bench_act_transfer_cube_pixels.py --demos 3 --seeds 0 --train-minutes 1 --eval-episodes 2   # smoke
"""

from imitation_target import ImitationTarget, run_benchmark  # this folder is on sys.path as a script's

SPEC = ImitationTarget(
    title="ACT top camera + joints",
    experiment="act_transfer_cube_pixels",  # configs/experiment/act_transfer_cube_pixels.yaml
    target=0.90,
    anchors="ACT paper (sim transfer, scripted demos, 480x640 cameras): 86%; LeRobot ACT on gym-aloha: 83-88%",
    demos=50,
    train_minutes=90.0,
    workdir="outputs/bench/act_transfer_cube_pixels",
    eval_episodes=100,
)

if __name__ == "__main__":
    run_benchmark(SPEC, __doc__)
