"""Train a binary FCN with discretized input and report its exact robustness next to PGD's.

Thin driver over :func:`edgebnn.certify.certify_report`, run on ``--chunk`` images
at a time (every eps per chunk) and merged with
:func:`edgebnn.certify.report.summarize_examples`; the report is rewritten after
every chunk, so a run stopped early leaves exact numbers on the images it finished, and
a rerun with the same settings into the same folder continues after the last written
chunk (other settings start over). Datasets: ``fashion_mnist``
(train on the 60k training set, certify a seeded subset of the test set) or
``mnist_split`` (MNIST's offline test set only: a seeded class-stratified
8000 / 2000 split, trained on the 8000, certified on part of the 2000).

Example:
    python scripts/certify_fcn.py --dataset fashion_mnist --units 100 --layers 3 \
        --n 200 --eps 0.05 0.1 --time-limit 20 --out /work/notes/certify/fashion
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import edgebnn  # noqa: F401
from edgebnn import _io, data
from edgebnn.certify import exact
from edgebnn.certify.report import DEFAULT_ATTACK, certify_report, compare_solvers, summarize_examples, to_markdown
from edgebnn.recipes import store

#: The offline MNIST split: a class-stratified 8,000 / 2,000 carve of the official test set.
MNIST_SPLIT = {"train_size": 8000, "test_size": 2000}
#: What the store key says of each dataset's training images (the carve's seed is ``--seed``).
TRAIN_DATA = {"fashion_mnist": "fashion_mnist/train",
              "mnist_split": f"mnist/test carve {MNIST_SPLIT['train_size']}/{MNIST_SPLIT['test_size']} (train part)"}
#: Training batch size.
BATCH_SIZE = 128


def load(dataset, seed):
    if dataset == "fashion_mnist":
        x, y = data.load("fashion_mnist", "train")
        xt, yt = data.load("fashion_mnist", "test")
        return x, y, xt, yt
    x, y, xt, yt, _ = data.carve("mnist", "test", seed=seed, **MNIST_SPLIT)
    return x, y, xt, yt


def get_model(args, x, y, xt, yt, log):
    """The binary FCN of ``args``, trained on ``(x, y)`` or loaded from the store in ``--cache-dir``; also
    written to ``--out``/model.keras (the model scripts/certify_strategies.py takes)."""
    trained = store.trained_model(
        "panda_fcn2", options={"hidden_units": args.units, "hidden_layers": args.layers, "precision": "binary",
                               "input_bits": args.input_bits,
                               "name": f"fcn{args.units}x{args.layers}_binary_in{args.input_bits}"},
        data=TRAIN_DATA[args.dataset], train_data=lambda: (x, y), epochs=args.epochs,
        batch_size=BATCH_SIZE, seed=args.seed, cache=args.cache_dir or args.out / "store", verbose=2)
    model = trained.model
    if not trained.stored:
        log(f"trained {model.name}: test accuracy {model.evaluate(xt, yt, verbose=0)[1]:.4f} on {len(xt)} images")
    with _io.atomic_path(args.out / "model.keras") as tmp:
        model.save(tmp)
    return trained


def resume(args, trained, subset, rows, seconds):
    """Load the finished chunks of an earlier run into ``rows`` / ``seconds``; return how many images they hold.

    Only a report written by the same model (its store key), images, eps list, solver, time limit and attack
    counts; anything else (or no report) starts from the first image.
    """
    path = args.out / "report.json"
    if not path.exists():
        return 0
    old = json.loads(path.read_text())
    attack = {"attack": "pgd", "steps": args.pgd_steps, "restarts": args.pgd_restarts}
    n = old.get("n", 0)
    same = (old.get("weights_key") == trained.key and old.get("dataset") == args.dataset
            and old.get("subset_seed") == args.seed and old.get("solver") == args.solver
            and old.get("time_limit") == args.time_limit and old.get("attack") == attack
            and [r["eps"] for r in old.get("results", [])] == list(args.eps)
            and old.get("test_indices") == subset[:n].tolist() and n % args.chunk == 0)
    if not same:
        return 0
    for eps, result in zip(args.eps, old["results"]):
        rows[eps] += result["examples"]
        for key in seconds[eps]:
            seconds[eps][key] += result[key]
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["fashion_mnist", "mnist_split"], required=True)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--input-bits", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000, help="test images to certify")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--solver", default="milp")
    parser.add_argument("--processes", type=int, default=exact.default_processes())
    parser.add_argument("--pgd-steps", type=int, default=DEFAULT_ATTACK["steps"])
    parser.add_argument("--pgd-restarts", type=int, default=DEFAULT_ATTACK["restarts"])
    parser.add_argument("--compare-solvers", type=int, default=0,
                        help="also run every solver backend on this many attack-surviving examples (first eps)")
    parser.add_argument("--chunk", type=int, default=100, help="images per chunk (the report is written after each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="studies store holding the trained weights (default: OUT/store)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    def log(line):
        print(f"[{time.time() - start:7.1f}s] {line}", flush=True)

    x, y, xt, yt = load(args.dataset, args.seed)
    log(f"{args.dataset}: {len(x)} train / {len(xt)} test images")
    trained = get_model(args, x, y, xt, yt, log)
    model = trained.model
    subset = data.np.sort(data.np.random.default_rng(args.seed).permutation(len(xt))[: args.n])
    xs, ys = xt[subset], yt[subset]
    attack = {"attack": "pgd", "steps": args.pgd_steps, "restarts": args.pgd_restarts}
    if args.compare_solvers:
        from edgebnn.evaluation.robustness import craft, predict_labels  # noqa: PLC0415

        eps = args.eps[0]
        survived = data.np.flatnonzero(predict_labels(model, craft(model, xs, ys, eps=eps, **attack)) == ys)
        pick = survived[: args.compare_solvers]
        comparison = compare_solvers(model, xs[pick], ys[pick], eps=eps, time_limit=args.time_limit)
        _io.write_json(args.out / "solver_comparison.json", comparison)
        for name, res in comparison["solvers"].items():
            log(f"solver {name}: statuses {res['statuses']} seconds {[round(s, 2) for s in res['seconds']]} "
                f"median {res['seconds_median']:.2f}")
        log(f"disagreements between solvers on decided examples: {comparison['disagreements']}")
    from edgebnn.deploy.convert import convert  # noqa: PLC0415
    from edgebnn.deploy.verify import tflite_predict  # noqa: PLC0415

    flatbuffer = convert(model, target="lce")
    rows = {eps: [] for eps in args.eps}
    seconds = {eps: {"attack_seconds": 0.0, "certify_seconds": 0.0} for eps in args.eps}
    accuracy = float(model.evaluate(xt, yt, verbose=0)[1])
    done = resume(args, trained, subset, rows, seconds)
    if done:
        log(f"resuming after {done} images certified by an earlier run with the same settings")
    for begin in range(done, len(xs), args.chunk):
        part = slice(begin, begin + args.chunk)
        chunk = certify_report(model, xs[part], ys[part], eps_list=args.eps, time_limit=args.time_limit,
                               solver=args.solver, processes=args.processes, attack=attack,
                               deployed=functools.partial(tflite_predict, flatbuffer),
                               progress=lambda label, done, total: log(f"{label}: {done}/{total}"))
        for eps, result in zip(args.eps, chunk["results"]):
            rows[eps] += [{**r, "index": r["index"] + begin} for r in result["examples"]]
            for key in seconds[eps]:
                seconds[eps][key] += result[key]
        report = {**chunk, "n": len(rows[args.eps[0]]),
                  "results": [summarize_examples(rows[eps], eps=eps) | seconds[eps] for eps in args.eps]}
        report.update(weights_key=trained.key, dataset=args.dataset, subset_seed=args.seed,
                      test_indices=subset[: report["n"]].tolist(), accuracy_full_test=accuracy)
        _io.write_json(args.out / "report.json", report)
        _io.write_text(args.out / "report.md", to_markdown(report))
        log(f"chunk {begin // args.chunk + 1}: {report['n']}/{len(xs)} images written")
    report = json.loads((args.out / "report.json").read_text())  # also when an earlier run finished every chunk
    print((args.out / "report.md").read_text())
    hidden = ("examples", "attack_missed_indices")
    summary = [{k: v for k, v in r.items() if k not in hidden} for r in report["results"]]
    print(json.dumps(summary, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
