"""Run logs truncated at resume: metrics.jsonl and SB3's progress CSVs keep only the rows up to the resumed step."""

import json

from training.logging import truncate_csv, truncate_metrics


def test_metrics_rows_after_the_step_and_a_torn_last_line_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "train/loss": 1.0 / s} for s in (50, 100, 150, 200)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 250, "train/lo')
    assert truncate_metrics(path, 100) == 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:2]
    assert not list(tmp_path.glob(".*.tmp"))  # replaced through a temp file and a rename
    assert truncate_metrics(path, 100) == 0 and truncate_metrics(tmp_path / "missing.jsonl", 1) == 0
    assert truncate_metrics(path, -1) == 2 and path.read_text() == ""


def test_progress_csv_rows_past_the_step_are_dropped(tmp_path):
    path = tmp_path / "progress.csv"
    path.write_text("rollout/ep_rew_mean,time/total_timesteps\n-3.5,512\n-2.0,1024\n-1.0,1536\n,\n")
    assert truncate_csv(path, 1024, "time/total_timesteps") == 2
    assert path.read_text() == "rollout/ep_rew_mean,time/total_timesteps\n-3.5,512\n-2.0,1024\n"
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert truncate_csv(other, 0, "time/total_timesteps") == 0 and other.read_text() == "a,b\n1,2\n"
