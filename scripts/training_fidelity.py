"""The training-fidelity table: ours vs the paper's clean accuracy for every model of the paper recipes.

Trains each model of :data:`edgebnn.fidelity.MODELS` at its recipe's training settings (through a
studies store, so the table resumes where it stopped), and writes the compact JSON and the docs page
after every model:

    EDGEBNN_DATA_DIR=../shared/data python scripts/training_fidelity.py [--only guan galloway] [--store DIR]

``--set KEY=VALUE`` applies a recipe override to every model (for a smoke test, e.g.
``--set train.epochs=1``); the page lists the overrides it was made with.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import fidelity

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="papers (guan, galloway, panda) or recipe/cell ids to run; default all")
    parser.add_argument("--store", default="runs/fidelity_store", help="studies store holding the trained weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override applied to every model")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads")
    parser.add_argument("--json", default=str(ROOT / "results" / "training_fidelity" / "fidelity.json"))
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "training-fidelity.md"))
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    import tensorflow as tf  # noqa: PLC0415

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    entries = [e for e in fidelity.MODELS
               if args.only is None or e.paper in args.only or f"{e.recipe}/{e.cell}" in args.only]
    if not entries:
        parser.error(f"--only {args.only} selects no model")
    json_path, md_path = Path(args.json), Path(args.markdown)
    command = "python scripts/training_fidelity.py" + "".join(f" --set {o}" for o in args.overrides)
    for entry in entries:
        print(f"{entry.paper}: {entry.label} ({entry.recipe} / {entry.cell})", flush=True)
        row = fidelity.measure(entry, store_dir=args.store, overrides=tuple(args.overrides))
        rows = {}  # read again: other runs of this script may have added rows meanwhile
        if json_path.is_file():
            rows = {(r["recipe"], r["cell"]): r for r in json.loads(json_path.read_text(encoding="utf-8"))["rows"]}
        previous = rows.get((entry.recipe, entry.cell))
        if row["train_seconds_per_epoch"] is None and previous and previous["key"] == row["key"]:
            row["train_seconds_per_epoch"] = previous["train_seconds_per_epoch"]
        rows[(entry.recipe, entry.cell)] = {k: v for k, v in row.items() if k != "verdict"}
        print(f"  ours {row['ours']:.1f}% vs paper {row['paper_value']}", flush=True)
        ordered = [rows[(e.recipe, e.cell)] for e in fidelity.MODELS if (e.recipe, e.cell) in rows]
        table = fidelity.to_json(ordered)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
        md_path.write_text(fidelity.to_markdown(table, command=command), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
