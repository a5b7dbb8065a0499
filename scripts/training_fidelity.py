"""The training-fidelity page: ours vs the paper's clean accuracy for every model behind the results page.

Reads the run reports under ``results/`` (the runs behind ``docs/results.md``) and writes
``docs/training-fidelity.md`` (logic in :mod:`edgebnn.fidelity`); no training, no TensorFlow.
Run from the repository's root (the page names run folders relative to it):

    python scripts/training_fidelity.py
"""

import argparse
import sys
from pathlib import Path

from edgebnn import fidelity
from edgebnn.recipes.results import find_reports
from edgebnn.recipes.schema import RecipeError

#: The command that regenerates the committed page.
COMMAND = "python scripts/training_fidelity.py"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="folder above the run folders (default: results)")
    parser.add_argument("--out", default="docs/training-fidelity.md", help="the page to write")
    args = parser.parse_args(argv)
    try:
        reports = find_reports([args.results])
    except RecipeError as e:
        parser.exit(2, f"error: {e}\n")
    Path(args.out).write_text(fidelity.page(reports, command=COMMAND), encoding="utf-8")
    print(f"{len(reports)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
