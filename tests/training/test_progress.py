"""Progress reports: a tqdm bar on a terminal, plain lines without carriage returns anywhere else."""

import io

from training.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_plain_lines_are_written_and_no_carriage_return():
    out = io.StringIO()
    with Progress(5000, "train act", log_every_s=0.0, stream=out, initial=1000) as bar:
        bar.update(200, loss=0.125)
        bar.update(4000 - 200, loss=0.0625)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2  # one per report (log_every_s=0: every update), none repeated at close
    assert lines[0].startswith("train act: 1200/5000 steps (24%) ") and "steps/s loss=0.125 eta " in lines[0]
    assert lines[1].startswith("train act: 5000/5000 steps (100%) ") and lines[1].endswith("loss=0.0625")


def test_lines_are_spaced_by_the_interval_and_the_last_state_is_written_at_close():
    out = io.StringIO()
    bar = Progress(100, "collect reach", unit="ep", log_every_s=3600.0, stream=out)
    for _ in range(100):
        bar.update()
    assert out.getvalue() == ""  # the interval has not passed
    bar.close()
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("collect reach: 100/100 eps (100%) ")
    assert len(out.getvalue().splitlines()) == 1


def test_unknown_total_and_disabled():
    out = io.StringIO()
    with Progress(None, "rollouts", log_every_s=0.0, stream=out) as bar:
        bar.update(3)
    assert out.getvalue().startswith("rollouts: 3 steps ") and "eta" not in out.getvalue()
    quiet = io.StringIO()
    with Progress(10, "x", enabled=False, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""


def test_a_terminal_gets_the_tqdm_bar():
    out = _Terminal()
    with Progress(50, "train mlp", stream=out) as bar:
        for _ in range(50):
            bar.update(1, loss=0.5)
    text = out.getvalue()
    assert "\r" in text and "train mlp" in text and "50/50" in text and "loss=0.5" in text
