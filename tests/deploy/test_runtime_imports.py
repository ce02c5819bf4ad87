"""deploy/runtime runs with numpy, onnxruntime and the standard library alone: no torch, MuJoCo or our packages."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.deploy.bundle_factory import ramp_bundle

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "deploy" / "runtime"
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime"}

# Runs in a fresh interpreter: blocks forbidden imports outright, then checks that importing and running the
# runtime loaded no top-level module beyond the standard library and what numpy/onnxruntime load themselves.
CHILD = r"""
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {"torch", "mujoco", "gymnasium", "onnx", "diffusers", "stable_baselines3", "hydra", "omegaconf",
           "envs", "policies", "training", "scripts", "tests"}

class Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED or (top == "deploy" and name not in ("deploy", "deploy.runtime")
                              and not name.startswith("deploy.runtime.")):
            raise ImportError(f"deploy.runtime must not import {name}")
        return None

sys.meta_path.insert(0, Refuse())
import time
import numpy, numpy.random, onnxruntime  # noqa: E401  (numpy.random loads its Cython runtime lazily)
baseline = {m.split(".")[0] for m in sys.modules}

from deploy.runtime import ChunkRunner, SimulatedLatency
obs = {"observation.state": numpy.array([1.0, 2.0], numpy.float32)}
for kwargs in ({}, {"mode": "async"}, {"mode": "async", "latency": SimulatedLatency(0.04, 0.02, seed=1)}):
    with ChunkRunner(sys.argv[1], **kwargs) as runner:
        commands = []
        while len(commands) < 5 and runner.statistics.ticks < 400:  # the async thread's first chunk takes a while
            action = runner.tick(obs)
            if action is not None:
                commands.append(action)
            time.sleep(0.005)
        runner.tick({"observation.state": numpy.array([numpy.nan, 0.0], numpy.float32)})
    assert len(commands) == 5 and commands[-1].shape == (2,), runner.summary()

new = {m.split(".")[0] for m in sys.modules} - baseline - set(sys.stdlib_module_names) - {"deploy"}
assert not new, f"deploy.runtime loaded non-standard modules: {sorted(new)}"
print("isolated-ok")
"""


def test_runtime_runs_with_torch_mujoco_and_our_packages_blocked(tmp_path):
    bundle = ramp_bundle(tmp_path / "bundle", chunk_size=5, n_action_steps=3)
    result = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "isolated-ok" in result.stdout


def test_runtime_sources_import_only_the_standard_library_numpy_and_onnxruntime():
    # Also catches imports on code paths the subprocess run does not reach.
    allowed = ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names)
    offenders = []
    files = sorted(RUNTIME.glob("*.py"))
    assert files, RUNTIME
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:  # relative: inside deploy/runtime (a level above would leave the package)
                    if node.level > 1:
                        offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
                    continue
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert not offenders, offenders
