"""Torch modules -> single-file ONNX graphs (torch.onnx dynamo exporter) and optional TorchScript artefacts."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from .config import DEFAULT_OPSET



@dataclass
class Graph:
    """One ONNX file of a bundle: the module, its named example inputs (batch 1, fixed shapes) and output name."""

    file: str
    module: nn.Module
    input_names: list[str]
    examples: tuple[Tensor, ...]
    output: str

    def __post_init__(self) -> None:
        if len(self.input_names) != len(self.examples):
            raise ValueError(f"{self.file}: {len(self.input_names)} input names for {len(self.examples)} examples")


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress to stdout and warns about torchvision ops we never use."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def export_onnx(graph: Graph, directory: Path, opset: int = DEFAULT_OPSET, optimize: bool = True) -> Path:
    """Write graph.file into `directory` with its weights inside (no external-data file) and check it.

    The dynamo exporter (torch.export) is used: the TorchScript-based one mis-traces ACT's batch-dependent expands.
    Shapes are static (batch 1), which is what the runtime feeds and lets onnxruntime fold shape arithmetic.
    """
    path = Path(directory) / graph.file
    module = graph.module.eval()
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(module, graph.examples, dynamo=True, input_names=list(graph.input_names),
                                        output_names=[graph.output], opset_version=opset, optimize=optimize,
                                        verbose=False)
            program.save(str(path), external_data=False)
    except Exception as e:  # torch.export / onnxscript raise many exception types; name the graph
        raise RuntimeError(f"ONNX export of {graph.file} ({type(module).__name__}) failed: {type(e).__name__}: {e}"
                           ) from e
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    names = [i.name for i in model.graph.input]
    if names != list(graph.input_names):
        raise RuntimeError(f"{graph.file}: exported inputs {names} differ from {graph.input_names} (an input the "
                           "module ignores is dropped by the exporter)")
    outputs = [o.name for o in model.graph.output]
    if outputs != [graph.output]:
        raise RuntimeError(f"{graph.file}: exported outputs {outputs}, expected [{graph.output!r}]")
    return path


def export_torchscript(graph: Graph, path: Path) -> Path:
    """A traced TorchScript module with the same inputs as the ONNX graph, for libtorch controllers."""
    module = graph.module.eval()
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module, graph.examples, check_trace=False)
        expected = module(*graph.examples)
        got = traced(*graph.examples)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
        raise RuntimeError(f"TorchScript trace of {graph.file} does not reproduce the module on its example input")
    tmp = path.with_name(f".{path.name}.tmp")
    traced.save(str(tmp))
    tmp.replace(path)
    return path
