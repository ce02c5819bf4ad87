"""Every `python scripts/<name>.py ...` example in README.md and in the configs' comments composes with Hydra and
passes the strict key check: documentation that shows a command which fails is a bug (issue 12 §3)."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest

from training import cli

pytestmark = pytest.mark.slow  # composes every documented command with Hydra

REPO = Path(__file__).resolve().parents[2]
CONFIG_OF = {"train": "train", "train_rl": "train_rl", "eval": "eval", "export": "export", "collect": "collect",
             "quickstart": "quickstart", "replay": "replay", "rollout_expert": "rollout"}
COMMAND = re.compile(r"python3? scripts/(\w+)\.py([^`\n]*)")


def _sources() -> list[tuple[str, str]]:
    """(where, text) of README.md and every config file, continuation lines (`\\`) joined."""
    files = [REPO / "README.md", *sorted((REPO / "configs").rglob("*.yaml"))]
    out = []
    for path in files:
        text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())
        out.append((str(path.relative_to(REPO)), text))
    return out


def _overrides(tail: str) -> list[str] | None:
    """The arguments of a documented command, up to where its description starts (two spaces, `#`, prose);
    <placeholders> become a path. None when the command shows no complete argument list (`...`)."""
    tail = re.sub(r"<[^>]*>", "placeholder", re.split(r"\s#|\s{2,}", tail)[0])
    args = []
    for token in shlex.split(tail):
        if token == "...":
            return None
        if not (token.startswith("-") or "=" in token):
            break
        args.append(token)
    return args


def _examples() -> list[tuple[str, str, list[str]]]:
    found = []
    for where, text in _sources():
        for match in COMMAND.finditer(text):
            script, tail = match.group(1), match.group(2)
            if script not in CONFIG_OF:
                continue  # argparse scripts (inspect_dataset)
            args = _overrides(tail)
            if args is not None:
                found.append((where, script, args))
    return found


EXAMPLES = _examples()


@pytest.fixture(scope="module", autouse=True)
def schemas():
    """The scripts register their structured configs when imported; run them as modules, not as __main__."""
    for script in CONFIG_OF:
        runpy.run_path(str(REPO / "scripts" / f"{script}.py"), run_name="example_commands")


def test_the_docs_show_commands_for_every_script():
    assert len(EXAMPLES) >= 30
    assert {script for _, script, _ in EXAMPLES} == set(CONFIG_OF)
    camera = [args for where, script, args in EXAMPLES if where == "configs/collect.yaml" and script == "collect"]
    assert ["env_kwargs.obs_mode=state_pixels", "+env_kwargs.cameras=[top]", "+env_kwargs.image_size=[96,96]",
            "cameras=[top]"] in camera


@pytest.mark.parametrize("where, script, args", EXAMPLES,
                         ids=[f"{w}:{s} {' '.join(a)}" for w, s, a in EXAMPLES])
def test_documented_command_composes(where, script, args):
    from hydra._internal.utils import get_args_parser

    if script == "train":  # as scripts/train.py starts: env=null is the env group's `none` option
        args = cli.rewrite_null_groups(args, ("env",))
    parsed = get_args_parser().parse_args(args)
    for overrides in cli._composition_runs(parsed.overrides, parsed.multirun):
        cfg = cli.compose(CONFIG_OF[script], overrides)
        cli.check_keys(cfg)


def test_a_wrong_example_would_be_caught():
    """The check is not vacuous: the camera command as the collect config used to print it fails."""
    with pytest.raises(cli.UsageError, match="Could not override 'env_kwargs.cameras'"):
        cli.compose("collect", ["env_kwargs.obs_mode=state_pixels", "env_kwargs.cameras=[top]"])
