"""scripts/inspect_dataset.py --verify: one line per problem and a summary; exit 0 clean, 1 problems, 2 bad usage."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_test_utils import flip, value_bytes_offset

from training.datasets import checksums
from training.datasets.verify import verify_dataset

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))
import inspect_dataset  # noqa: E402

DATA0 = "data/chunk-000/file-000.parquet"
VIDEO1 = "videos/observation.images.top/chunk-000/file-001.mp4"


def reseal(root: Path) -> None:
    """Record the current bytes as if a buggy writer had produced them: only the structural checks can tell."""
    files = checksums.compute(root, checksums.dataset_files(root))
    (root / checksums.CHECKSUMS_PATH).write_text(json.dumps(checksums.manifest(files)))


def run_main(capsys, *argv):
    code = inspect_dataset.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip().splitlines()


def test_clean_dataset_exits_0(dataset, capsys):
    code, out, err = run_main(capsys, dataset, "--verify")
    assert code == 0 and err == []
    assert len(checksums.dataset_files(dataset)) == 10  # info, stats, stats state, tasks, 2 episodes, 2 data, 2 videos
    assert out == [f"ok: {dataset}: 10 files, 3 episodes, 15 frames verified (checksums, schema, frame counts, "
                   "index continuity, finite values, videos)"]


def test_flipped_bytes_are_a_checksum_problem(dataset, capsys):
    flip(dataset / DATA0, value_bytes_offset(dataset / DATA0, "action"), count=8)
    code, out, _ = run_main(capsys, dataset, "--verify")
    assert code == 1
    assert [line for line in out if line.startswith("problem:")] == [
        line for line in out if "file-000.parquet: sha256" in line]
    assert len(out) == 2 and out[-1].startswith("summary: 1 problem(s)")


def test_nan_values_wrong_rows_and_index_gaps_are_named(dataset, capsys):
    path = dataset / DATA0
    table = pq.read_table(path)
    action = table.column("action").combine_chunks().flatten().to_numpy().copy()
    action[2 * 7 + 1] = np.nan  # frame 7 (episode 1, frame 2)
    index = table.column("index").to_numpy().copy()
    index[3] = 40
    table = table.set_column(table.column_names.index("action"), "action",
                             pa.FixedSizeListArray.from_arrays(pa.array(action), 2))
    table = table.set_column(table.column_names.index("index"), "index", pa.array(index))
    pq.write_table(table, path)
    reseal(dataset)
    code, out, _ = run_main(capsys, dataset, "--verify")
    problems = [line for line in out if line.startswith("problem:")]
    assert code == 1 and len(problems) == 2, out
    assert "episode 0: index is not 0..4 in order" in problems[0]
    assert "episode 1: 'action' holds NaN or inf at frame 2 (1 frames)" in problems[1]


def test_missing_rows_rewritten_video_and_stray_file(dataset, capsys):
    path = dataset / DATA0
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)
    reseal(dataset)
    (dataset / "meta/notes.txt").write_text("hello")
    from training.datasets.video import VideoConfig, VideoStreamWriter

    # Rewritten after sealing; its 4 frames are exactly what episode 2 needs, so only the checksum tells.
    writer = VideoStreamWriter(dataset / VIDEO1, 10, 32, 48, VideoConfig(codec="libx264"))
    writer.write(np.zeros((4, 32, 48, 3), np.uint8))
    writer.close()
    code, out, _ = run_main(capsys, dataset, "--verify")
    problems = [line[len("problem: "):] for line in out if line.startswith("problem:")]
    assert code == 1 and len(problems) == 4, out
    assert problems[0].startswith(f"{dataset / VIDEO1}: size")
    assert problems[1] == f"{dataset}/meta/notes.txt: not listed in meta/checksums.json (stray or foreign file)"
    assert problems[2] == f"{path}: episode 1: 5 rows, the episode table says 6"
    assert problems[3] == f"{dataset}/data: the data files hold 14 rows, info.json declares total_frames=15"
    assert out[-1] == f"summary: 4 problem(s) in {dataset} (11 files checked)"


def test_short_video_is_counted_without_decoding(dataset, capsys):
    from training.datasets.video import VideoConfig, VideoStreamWriter

    video = dataset / "videos/observation.images.top/chunk-000/file-000.mp4"
    writer = VideoStreamWriter(video, 10, 32, 48, VideoConfig(codec="libx264"))
    writer.write(np.zeros((7, 32, 48, 3), np.uint8))
    writer.close()
    reseal(dataset)
    code, out, _ = run_main(capsys, dataset, "--verify")
    assert code == 1 and any("file-000.mp4: holds 7 frames, episodes 0..1 need 11" in line for line in out), out


def test_dataset_without_checksums_is_noted_not_failed(dataset, capsys):
    (dataset / checksums.CHECKSUMS_PATH).unlink()
    code, out, _ = run_main(capsys, dataset, "--verify")
    assert code == 0 and out[0].startswith("note:") and "carries no checksums" in out[0]


def test_unreadable_metadata_is_one_problem(dataset, capsys):
    (dataset / "meta/info.json").write_text("{")
    report = verify_dataset(dataset)
    assert not report.ok and any("info.json: size" in p for p in report.problems)
    assert any("metadata cannot be read" in p and "not valid JSON" in p for p in report.problems)


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/nowhere", "--verify"], "error: dataset directory does not exist: {tmp}/nowhere"),
    (["{tmp}", "--verify"], "error: {tmp} is not a LeRobot dataset: meta/info.json is missing"),
    (["{tmp}", "--max-episodes", "-1"], "error: --max-episodes must be >= 0, got -1"),
    (["{tmp}", "--verfy"], "error: unrecognized arguments: --verfy"),
    ([], "error: the following arguments are required: dataset"),
])
def test_bad_usage_is_one_error_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        inspect_dataset.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [message.format(tmp=tmp_path)]


@pytest.mark.slow
def test_script_end_to_end(dataset, tmp_path):
    ok = subprocess.run([sys.executable, str(REPO / "scripts/inspect_dataset.py"), str(dataset), "--verify"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stderr
    flip(dataset / DATA0, 100)
    bad = subprocess.run([sys.executable, str(REPO / "scripts/inspect_dataset.py"), str(dataset), "--verify"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "file-000.parquet" in bad.stdout
    usage = subprocess.run([sys.executable, str(REPO / "scripts/inspect_dataset.py"), str(tmp_path / "no")],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and usage.stderr.strip().splitlines() == [
        f"error: dataset directory does not exist: {tmp_path / 'no'}"]
