"""predict_chunk traces to ONNX (normalization and, for diffusion, the whole DDIM loop included) and matches torch."""

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from policies import make_policy

from .synthetic import STATE_FEATURES, TINY


class _ChunkModel(torch.nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, state, env_state, *noise):
        obs = {"observation.state": state, "observation.environment_state": env_state}
        if noise:
            return self.policy.predict_chunk(obs, noise=noise[0])
        return self.policy.predict_chunk(obs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["act", "diffusion", "mlp"])
def test_predict_chunk_exports_to_onnx(tmp_path, task, name):
    overrides = {"num_inference_steps": 3} if name == "diffusion" else {}
    policy = make_policy({"type": name, **TINY[name], **overrides}, STATE_FEATURES, task.stats()).eval()
    n_obs = policy.config.n_obs_steps
    inputs = [torch.randn(1, n_obs, 4), torch.randn(1, n_obs, 3)]
    names = ["state", "env_state"]
    if name == "diffusion":
        inputs.append(torch.randn(1, policy.config.horizon, 2))
        names.append("noise")
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ChunkModel(policy), tuple(inputs), str(path), dynamo=False, input_names=names, output_names=["actions"],
            dynamic_axes={n: {0: "batch"} for n in names + ["actions"]},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options)
    batch = [torch.randn(3, *x.shape[1:]) for x in inputs]  # another batch size than the traced one
    got = session.run(None, {n: x.numpy() for n, x in zip(names, batch)})[0]
    want = _ChunkModel(policy)(*batch).numpy()
    assert got.shape == want.shape == (3, policy.chunk_length, 2)
    assert np.abs(got - want).max() <= 1e-4
