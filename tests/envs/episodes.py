"""One episode of a task's scripted expert, shared by the task tests."""

from envs.experts import make_expert


def expert_episode(env, seed: int) -> tuple[bool, dict]:
    """Run the expert from reset(seed) until the episode terminates or is truncated: (terminated, the last info)."""
    expert = make_expert(env)
    obs, info = env.reset(seed=seed)
    expert.reset()
    terminated = False
    for _ in range(env.unwrapped.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert(obs))
        if terminated or truncated:
            break
    return terminated, info
