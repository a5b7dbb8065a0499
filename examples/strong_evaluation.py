"""Evaluate your own Larq model's robustness with the strong evaluation.

PGD (short, and long with restarts), APGD-CE, APGD-T and Square per gradient surrogate of
the sign (clipped, identity, smooth), their AutoAttack ensemble per example, and the
gradient-masking checks (single- vs multi-step, white- vs black-box, large eps,
convergence, zero gradients), printed as Markdown:

    python examples/own_model.py --out runs/own_model_files
    python examples/strong_evaluation.py --model runs/own_model_files/my.keras --data runs/own_model_files/data.npz

Without --model/--data it trains a small Larq BNN on generated images first.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_arguments, model_and_data  # noqa: E402

from edgebnn.evaluation import checks, masking  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--limit", type=int, default=500, help="test images evaluated")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)

    model, x_test, y_test = model_and_data(args)
    limit = 20 if args.tiny else args.limit
    settings = (masking.StrongSettings(steps=5, pgd_steps=3, restarts=1, target_classes=1, square_queries=20)
                if args.tiny else masking.StrongSettings(steps=50, pgd_steps=40, restarts=2, target_classes=3,
                                                         square_queries=1000))
    report = masking.robustness_report(model, x_test[:limit], y_test[:limit], eps_list=args.eps, settings=settings)
    print(checks.to_markdown(report, title=f"Strong evaluation of `{model.name}` on {limit} images"))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
