"""Print a dataset's episodes, frames, features and statistics: python scripts/inspect_dataset.py PATH."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from training.datasets import DatasetMeta  # noqa: E402
from training.datasets.summary import describe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path, help="dataset root (holds meta/info.json)")
    parser.add_argument("--max-episodes", type=int, default=20, help="episodes listed one per line")
    args = parser.parse_args()
    print(describe(DatasetMeta(args.dataset), max_episodes=args.max_episodes))


if __name__ == "__main__":
    main()
