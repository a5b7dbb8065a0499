"""Certify a small binary network exactly.

Each test image is proved robust in its L-infinity ball (no input in it changes the
prediction), refuted with a counterexample that is replayed through Keras and the
converted .tflite, or left unknown at the time limit; the certified accuracy (a lower
bound) is printed beside PGD's (an upper bound). The network must be of the form
edgebnn.certify reads: InputDiscretization, Flatten, bias-free binary QuantDense layers
each followed by BatchNormalization (examples/own_model.py builds one):

    python examples/certify_bnn.py
    python examples/certify_bnn.py --model runs/own_model_files/my.keras --data runs/own_model_files/data.npz
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_arguments, model_and_data  # noqa: E402

from edgebnn.certify.report import certify_report, to_markdown  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--limit", type=int, default=200, help="test images certified")
    parser.add_argument("--time-limit", type=float, default=10.0, help="solver seconds per image")
    args = parser.parse_args(argv)

    model, x_test, y_test = model_and_data(args)
    limit = 10 if args.tiny else args.limit
    attack = {"attack": "pgd", "steps": 5 if args.tiny else 100, "restarts": 1 if args.tiny else 5}
    report = certify_report(model, x_test[:limit], y_test[:limit], eps_list=args.eps,
                            time_limit=2.0 if args.tiny else args.time_limit, attack=attack)
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
