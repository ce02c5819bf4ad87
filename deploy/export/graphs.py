"""Torch modules -> single-file ONNX graphs (torch.onnx dynamo exporter) and optional TorchScript artefacts."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch

from policies.export import Graph

from .config import DEFAULT_OPSET


@contextlib.contextmanager
def _tracing():
    """Quiet, traceable export: the exporter prints progress to stdout and warns about torchvision ops we never use;
    torch.distributions' argument validation (SB3 builds a Normal even for the deterministic action) is a
    data-dependent check that torch.export cannot trace, so it is switched off while tracing."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    validate = torch.distributions.Distribution._validate_args
    for logger in loggers:
        # torch.onnx warns at WARNING level about the torchvision ops it cannot register (never used here).
        logger.setLevel(logging.ERROR if logger.name == "torch.onnx" else logging.WARNING)
    torch.distributions.Distribution.set_default_validate_args(False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
            torch.distributions.Distribution.set_default_validate_args(validate)


def export_onnx(graph: Graph, directory: Path, opset: int = DEFAULT_OPSET, optimize: bool = True) -> Path:
    """Write graph.file into `directory` with its weights inside (no external-data file) and check it.

    The dynamo exporter (torch.export) is the default: the TorchScript-based one mis-traced ACT's batch-dependent
    expands in a quick try. Graphs that run Python-side scheduler code which reads tensor values (diffusers'
    DPM-Solver calls .numpy()) use the tracer instead, which records those values as constants -- right for a
    sampling loop whose timesteps are fixed; the parity check confirms it. Shapes are static (batch 1), which is what
    the runtime feeds and lets onnxruntime fold shape arithmetic.
    """
    path = Path(directory) / graph.file
    module = graph.module.eval()
    names = dict(input_names=list(graph.input_names), output_names=[graph.output], opset_version=opset)
    try:
        with _tracing(), torch.no_grad():
            if graph.exporter == "dynamo":
                program = torch.onnx.export(module, graph.examples, dynamo=True, optimize=optimize, verbose=False,
                                            **names)
                program.save(str(path), external_data=False)
            else:
                torch.onnx.export(module, graph.examples, str(path), dynamo=False, **names)
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
    with _tracing(), torch.no_grad():
        traced = torch.jit.trace(module, graph.examples, check_trace=False)
        expected = module(*graph.examples)
        got = traced(*graph.examples)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
        raise RuntimeError(f"TorchScript trace of {graph.file} does not reproduce the module on its example input")
    tmp = path.with_name(f".{path.name}.tmp")
    traced.save(str(tmp))
    tmp.replace(path)
    return path
