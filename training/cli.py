"""The entry of every Hydra script: strict keys, the whole config checked before Hydra makes a run dir, one `error:`.

A script keeps its `@hydra.main` function and starts it through `start(main, config_name, prepare)`:
  1. the command line is composed once with Hydra's compose API (no run dir, no logging), and Hydra's own errors
     (override syntax, unknown group option, wrong value type) become one `error: ...` line, exit 2;
  2. every key is compared with the dataclass schema of its node (`unknown_keys`): a key the schema does not
     define, also one added with `+`, is refused with its dotted path and the closest valid key. OmegaConf would
     otherwise keep it as a stray attribute of the dataclass, which no code reads;
  3. `prepare(cfg)` builds the typed config and runs every check that needs no work done (values, devices, paths);
only then does `main()` run, and inside it `reported(...)` turns the script's own input errors into the same line,
removing the run dir Hydra made if nothing but Hydra's files are in it.

Nodes typed as plain dicts (env.kwargs, collect's env_kwargs, replay's env_kwargs) are open by design.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from fileio.locks import is_locked, owner_pid

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Hydra flags that print something instead of running: left to Hydra unchecked.
_INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")
# What Hydra writes into a run dir before the task function runs.
_HYDRA_FILES = {".hydra"}


class UsageError(ValueError):
    """A bad command line or config value: reported as one `error:` line with exit status 2."""


def one_line(err: BaseException | str) -> str:
    """An error as one line: Hydra's and OmegaConf's multi-line messages folded, their underlying cause appended."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, str):
        return " ".join(err.split())
    if isinstance(err, OverrideParseException):
        reason = " ".join(str(err).split("See https://")[0].split())
        return f"cannot parse the override {err.override!r}: {reason}"
    if isinstance(err, MissingConfigException):
        first = str(err).strip().splitlines()[0]
        options = getattr(err, "options", None)
        return f"{first}; available options: {', '.join(options)}" if options else " ".join(first.split())
    lines = []
    for line in str(err).strip().splitlines():
        if line.startswith(("Config search path", "    full_key:", "    object_type", "    reference_type")):
            break
        if line.strip():
            lines.append(line.strip())
    text = " ".join(" ".join(lines).split()) or type(err).__name__
    key = getattr(err, "full_key", None)
    if isinstance(err, OmegaConfBaseException) and key and key not in text:
        text = f"{key}: {text}"  # which field, for messages that only say what was wrong
    cause = err.__cause__
    if isinstance(cause, (OmegaConfBaseException, ValueError)) and not isinstance(err, UsageError):
        # The first line of the direct cause says what was wrong (Hydra's own line names only the override).
        inner = " ".join(str(cause).strip().split("\n")[0].split())
        if inner and inner not in text and "$" not in inner:
            text = f"{text}: {inner}"
    return text


def fail(err: BaseException | str) -> NoReturn:
    print(f"error: {one_line(err)}", file=sys.stderr)
    sys.exit(2)


# ------------------------------------------------------------------------------------------- unknown keys
def _node_type(node: Any) -> Any:
    return OmegaConf.get_type(node) if isinstance(node, DictConfig) else None


def _known_paths(node: DictConfig, prefix: str, out: list[str]) -> None:
    typ = _node_type(node)
    if not dataclasses.is_dataclass(typ):
        return
    for f in dataclasses.fields(typ):
        out.append(prefix + f.name)
        child = node._get_node(f.name) if f.name in node else None
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _known_paths(child, f"{prefix}{f.name}.", out)


def _closest(key: str, path: str, siblings: Sequence[str], everything: Sequence[str]) -> str | None:
    """A close field of the same node, else a very close field anywhere (`+hidden_dims` meant policy.hidden_dims),
    else the least far field of the same node."""
    near = difflib.get_close_matches(key, siblings, n=1, cutoff=0.5)
    if near:
        return path + near[0]
    by_leaf: dict[str, str] = {}
    for full in everything:
        by_leaf.setdefault(full.rsplit(".", 1)[-1], full)
    near = difflib.get_close_matches(key, list(by_leaf), n=1, cutoff=0.75)
    if near:
        return by_leaf[near[0]]
    near = difflib.get_close_matches(key, siblings, n=1, cutoff=0.0)
    return path + near[0] if near else None


def unknown_keys(cfg: DictConfig, skip: Sequence[str] = ("hydra",)) -> list[str]:
    """One description per key of `cfg` that the dataclass schema of its node does not define (dotted path and the
    closest valid key). Nodes typed as plain dicts are open and not looked into."""
    everything: list[str] = []
    _known_paths(cfg, "", everything)
    problems: list[str] = []

    def walk(node: DictConfig, path: str) -> None:
        typ = _node_type(node)
        if not dataclasses.is_dataclass(typ):
            return
        fields = [f.name for f in dataclasses.fields(typ)]
        for key in node.keys():
            key = str(key)
            if not path and key in skip:
                continue
            if key not in fields:
                near = _closest(key, path, fields, everything)
                problems.append(f"'{path}{key}'" + (f" (did you mean '{near}'?)" if near else ""))
                continue
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, f"{path}{key}.")

    walk(cfg, "")
    return sorted(problems)


def check_keys(cfg: DictConfig) -> None:
    problems = unknown_keys(cfg)
    if problems:
        noun = "key" if len(problems) == 1 else "keys"
        raise UsageError(f"unknown config {noun} {', '.join(problems)}: the config defines no such {noun}")


def to_object(cfg: DictConfig) -> Any:
    """OmegaConf.to_object with a missing required value (`???`) named as the override that sets it."""
    try:
        return OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        key = err.full_key or "a value"
        raise UsageError(f"{key} is required and not set: pass {key}=<value>") from None
    except OmegaConfBaseException as err:
        raise UsageError(one_line(err)) from None


# ------------------------------------------------------------------------------------------- composition
def rewrite_null_groups(argv: Sequence[str], groups: Sequence[str]) -> list[str]:
    """`group=null` for a config group whose schema field is optional means "no such component". Hydra refuses
    null as a group choice, so it becomes the group's `none` option (configs/<group>/none.yaml sets the node to
    null; deleting the default with `~group` would break interpolations such as `optional dataset: ${env}`)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{key}=none" if sep and key in groups and value.strip() in ("null", "None") else arg)
    return out


def _composition_runs(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
    """The override lists to check: the command line itself, or for -m each value of every sweep in turn (with
    the other sweeps at their first value). Optuna-style interval sweeps have no values to list; they are left out."""
    if not multirun:
        return [list(overrides)]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    choices: list[list[str]] = []
    for o in parsed:
        if not o.is_sweep_override():
            choices.append([o.input_line])
        elif isinstance(o.value(), IntervalSweep):
            choices.append([])
        else:
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    base = [c[0] for c in choices if c]
    runs = [base]
    for i, values in enumerate(choices):
        for value in values[1:]:
            position = sum(1 for c in choices[:i] if c)
            runs.append(base[:position] + [value] + base[position + 1:])
    return runs


def compose(config_name: str, overrides: Sequence[str], config_dir: Path = CONFIG_DIR,
            search_dirs: Sequence[str] = ()) -> DictConfig:
    """The job config Hydra would build for these overrides (without its `hydra` node); errors as UsageError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    extra = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in search_dirs)}]"] \
        if search_dirs else []
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=[*overrides, *extra], return_hydra_config=True)
    except Exception as err:  # noqa: BLE001  composition only reads configs: whatever fails is the command line
        raise UsageError(_composition_error(err, overrides, config_dir)) from None
    finally:
        GlobalHydra.instance().clear()
    # Values such as `${hydra:runtime.choices.env}` resolve against the Hydra config, as they do in the job.
    HydraConfig.instance().set_config(cfg)
    _refuse_locked_run_dir(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _refuse_locked_run_dir(cfg: DictConfig) -> None:
    """Hydra writes .hydra/ and its log into hydra.run.dir before the job takes its lock: a run pointed at the
    directory a live training holds would overwrite that run's Hydra files, so it is refused here, before Hydra."""
    try:
        run_dir = cfg.hydra.run.dir
    except OmegaConfBaseException:  # unresolvable here; the job reports it
        return
    if run_dir and is_locked(run_dir):
        raise UsageError(f"run directory {run_dir} is locked by pid {owner_pid(run_dir)} that is working in it; "
                         "wait for it to finish or choose another hydra.run.dir")


def _composition_error(err: Exception, overrides: Sequence[str], config_dir: Path) -> str:
    """Hydra's message, or a better one where Hydra's says nothing about the override (a group set to null)."""
    if "Config group override must be" in str(err):
        for override in overrides:
            key, _, value = override.partition("=")
            group = Path(config_dir) / key.lstrip("+~")
            if group.is_dir() and value.strip() in ("null", "None", "", "~"):
                options = sorted(p.stem for p in group.glob("*.yaml"))
                return f"{override}: '{key}' is a config group and needs one of its options: {', '.join(options)}"
    return one_line(err)


def prepared(cfg: DictConfig, prepare: Callable[[DictConfig], Any]) -> Any:
    """The typed, checked config of a composed one: unknown keys refused, then `prepare` (typed + validated)."""
    check_keys(cfg)
    typed = prepare(cfg)
    check_finite(typed)
    return typed


# Exceptions `prepare` raises for bad input (a value, a missing file, a module that cannot be imported).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)


def preflight(config_name: str, prepare: Callable[[DictConfig], Any], argv: Sequence[str],
              config_dir: Path = CONFIG_DIR, script: str | None = None) -> None:
    """Compose and check the config of a command line as the script would, before Hydra creates anything."""
    from hydra._internal.utils import get_args_parser

    if "--version" in argv:
        return
    import io
    from contextlib import redirect_stderr

    captured = io.StringIO()
    try:
        with redirect_stderr(captured):  # argparse prints a usage block; the reason is its last line
            args, unknown = get_args_parser().parse_known_args(list(argv))
    except SystemExit:
        lines = captured.getvalue().strip().splitlines()
        raise UsageError(lines[-1].split(": error: ", 1)[-1] if lines else "cannot parse the command line") from None
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (Hydra overrides are key=value)")
    if any(getattr(args, flag, None) for flag in _INFO_FLAGS):
        return
    name = args.config_name or config_name
    if args.config_path:
        base = Path(script or sys.argv[0]).resolve().parent
        config_dir = Path(args.config_path) if os.path.isabs(args.config_path) else base / args.config_path
    search = [args.config_dir] if args.config_dir else []
    for overrides in _composition_runs(args.overrides, args.multirun):
        cfg = compose(name, overrides, config_dir, search)
        try:
            prepared(cfg, prepare)
        except UsageError:
            raise
        except INPUT_ERRORS as err:
            raise UsageError(one_line(err)) from None


def start(main: Callable[[], Any], config_name: str, prepare: Callable[[DictConfig], Any],
          null_groups: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> None:
    """Check sys.argv's config completely, then run the script's @hydra.main function (which re-composes it)."""
    sys.argv[1:] = rewrite_null_groups(sys.argv[1:], null_groups)
    try:
        preflight(config_name, prepare, sys.argv[1:], config_dir)
    except UsageError as err:
        fail(err)
    main()


# ------------------------------------------------------------------------------------------- inside the job
def _remove_if_only_hydra(run_dir: Path) -> None:
    """Hydra creates the run dir (.hydra/ and the job log) before the task starts; a run refused before any work
    must not leave one behind. Anything else in it means work was done: then it stays."""
    try:
        entries = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    logs = {p for p in entries if p.endswith(".log") and (run_dir / p).is_file()}
    if not entries - logs <= _HYDRA_FILES:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    cwd = Path.cwd().resolve()
    parent = run_dir.resolve().parent
    # Parents Hydra made for this run (e.g. outputs/train/<env>_<policy>/) go too, when empty and below the cwd.
    while parent != cwd and cwd in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def _close_logs_in(run_dir: Path) -> None:
    """Detach the job log's file handler (Hydra's `<job>.log` in the run dir) before the dir may be removed."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name is not None and Path(name).resolve().parent == run_dir.resolve():
            root.removeHandler(handler)
            handler.close()


@contextmanager
def reported(*errors: type[BaseException], cleanup: bool = True) -> Iterator[None]:
    """Inside a @hydra.main function: `errors` (plus UsageError) end the script with one `error:` line, exit 2,
    and (with `cleanup`) a run dir holding only Hydra's files is removed."""
    try:
        yield
    except (UsageError, *errors) as err:
        if not cleanup:
            fail(err)
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            hc = HydraConfig.get()
            if hc.mode == RunMode.RUN:
                run_dir = Path(hc.runtime.output_dir)
                _close_logs_in(run_dir)
                _remove_if_only_hydra(run_dir)
        except ValueError:  # not inside a Hydra job
            pass
        fail(err)


# ------------------------------------------------------------------------------------------- values
def check_finite(obj: Any, prefix: str = "") -> None:
    """Refuse NaN and infinity in every float of a (nested) dataclass config, naming the field: no config of ours
    means anything by them, and comparisons such as `lr <= 0` let NaN through."""
    import math

    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        name = prefix + f.name
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{name}={value} is not a finite number")
        if dataclasses.is_dataclass(value):
            check_finite(value, f"{name}.")
