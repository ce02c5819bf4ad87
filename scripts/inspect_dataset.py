"""Print a dataset's episodes, frames, features and statistics, or check it: python scripts/inspect_dataset.py PATH [--verify].

--verify checks everything (checksums, dtypes and shapes against info.json, frame counts, index continuity, NaN or
inf values, video frame counts) and prints one line per problem and a summary. Exit status: 0 clean, 1 problems
found, 2 bad usage (missing directory, not a dataset, bad arguments).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other script, instead of argparse's usage block
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv=None) -> int:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="dataset root (holds meta/info.json)")
    parser.add_argument("--max-episodes", type=int, default=20, help="episodes listed one per line")
    parser.add_argument("--verify", action="store_true", help="check every file and report each problem")
    args = parser.parse_args(argv)
    if args.max_episodes < 0:
        parser.error(f"--max-episodes must be >= 0, got {args.max_episodes}")
    root = args.dataset
    if not root.is_dir():
        parser.error(f"dataset directory does not exist: {root}")
    if not (root / "meta" / "info.json").is_file():
        parser.error(f"{root} is not a LeRobot dataset: meta/info.json is missing")

    from training.datasets import DatasetMeta
    from training.datasets.summary import describe
    from training.datasets.verify import verify_dataset

    if args.verify:
        report = verify_dataset(root)
        print("\n".join(report.lines()))
        return 0 if report.ok else 1
    try:
        print(describe(DatasetMeta(root), max_episodes=args.max_episodes))
    except (ValueError, OSError) as err:
        print(f"problem: {' '.join(str(err).split())}\nsummary: the dataset cannot be read; run with --verify for "
              "every problem", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
