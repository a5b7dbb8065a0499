"""Peak memory, each measured in a fresh child process as the growth of its peak resident
set size (``VmHWM``, see :func:`benchmarks.common.peak_rss_mib`) over its baseline after
TensorFlow, edgebnn and the model loaded.

- JSMA: the pixel-pair saliency scored in row blocks (:func:`edgebnn.attacks.jsma.best_pairs`)
  against the whole ``(batch, pixels, pixels)`` pair matrix at once (the algorithm before
  blocks, kept here only as the reference), on the same model and images; the two
  adversarial batches must be equal.
- One study cell: the quickstart recipe (binary FCN2, 2-bit input) on a small carve of
  Fashion-MNIST, run through ``python -m edgebnn.recipes run``: training, the FGSM / PGD
  curves and the report; its peak growth is compared with the process baseline.

Children: ``python -m benchmarks.memory jsma --algorithm blocks|whole --batch B --out X.npy``
and ``python -m benchmarks.memory cell --out DIR [--quick]``; each prints one JSON line.
"""

import argparse
import importlib
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import DATA_DIR, Figure, Result, child, peak_rss_mib

JSMA_GAMMA = 0.02
#: Smallest peak-RSS growth used as a denominator (a growth within the baseline peak reads as 0).
MIN_GROWTH_MIB = 1.0


def whole_pair_matrix(d_cls, d_other, domain, *, sign):
    """JSMA's pair selection before blocks: the whole ``(batch, pixels, pixels)`` score matrix at once."""
    import tensorflow as tf  # noqa: PLC0415

    num_features = d_cls.shape[-1]
    alpha = sign * (d_cls[:, :, None] + d_cls[:, None, :])
    beta = sign * (d_other[:, :, None] + d_other[:, None, :])
    diagonal = tf.eye(num_features, dtype=tf.bool)
    valid = domain[:, :, None] & domain[:, None, :] & ~diagonal[None] & (alpha > 0) & (beta < 0)
    scores = tf.where(valid, alpha * -beta, tf.zeros_like(alpha))
    flat = tf.reshape(scores, [tf.shape(d_cls)[0], -1])
    return tf.argmax(flat, axis=-1, output_type=tf.int32), tf.reduce_max(flat, axis=-1)


def _jsma_child(args):
    import edgebnn  # noqa: F401, PLC0415
    from edgebnn import attacks, data, zoo  # noqa: PLC0415

    jsma_module = importlib.import_module("edgebnn.attacks.jsma")
    if args.algorithm == "whole":
        jsma_module.best_pairs = whole_pair_matrix
    x, _ = data.load("fashion_mnist", "test", data_dir=DATA_DIR, limit=args.batch, seed=0)
    import tensorflow as tf  # noqa: PLC0415

    tf.keras.utils.set_random_seed(0)
    model = zoo.get("panda_fcn2")(precision="float")
    model(x[:2])
    baseline = peak_rss_mib()
    x_adv = np.asarray(attacks.jsma(model, x, gamma=JSMA_GAMMA))
    np.save(args.out, x_adv)
    return {"baseline_mib": baseline, "peak_mib": peak_rss_mib()}


def _cell_child(args):
    import edgebnn  # noqa: F401, PLC0415
    from edgebnn.recipes.__main__ import main  # noqa: PLC0415

    import tensorflow as tf  # noqa: F401, PLC0415

    baseline = peak_rss_mib()
    train, test, limit = (500, 200, 50) if args.quick else (3000, 1000, 300)
    main(["run", "quickstart", "--out", args.out, "--set", "train.epochs=1", "--set", "robustness=[]",
          "--set", "deploy.enabled=false", "--set", f"evaluation.limit={limit}",
          "--set", f'data.split={{source="train", train={train}, test={test}, seed=0}}'])
    return {"baseline_mib": baseline, "peak_mib": peak_rss_mib(), "train": train, "test": test, "limit": limit}


def run(*, quick=False):
    batch = 10 if quick else 100
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        jsma = {}
        for algorithm in ("whole", "blocks"):
            out = Path(tmp) / f"{algorithm}.npy"
            jsma[algorithm] = child("benchmarks.memory", "jsma", "--algorithm", algorithm, "--batch", str(batch),
                                    "--out", str(out))
            jsma[algorithm]["x_adv"] = np.load(out)
        equal = bool(np.array_equal(jsma["whole"]["x_adv"], jsma["blocks"]["x_adv"]))
        cell = child("benchmarks.memory", "cell", "--out", str(Path(tmp) / "cell"), *(["--quick"] if quick else []))
    growth = {k: v["peak_mib"] - v["baseline_mib"] for k, v in jsma.items()}
    figures.append(Figure(f"JSMA peak RSS, whole pair matrix / row blocks (batch {batch})",
                          jsma["whole"]["peak_mib"] / jsma["blocks"]["peak_mib"], jsma["whole"]["peak_mib"],
                          jsma["blocks"]["peak_mib"], "MiB", f"whole process; adversarial examples equal: {equal}"))
    figures.append(Figure(f"JSMA peak RSS growth over the baseline, whole pair matrix / row blocks (batch {batch})",
                          growth["whole"] / max(growth["blocks"], MIN_GROWTH_MIB), growth["whole"], growth["blocks"],
                          "MiB", f"the memory the attack itself adds (a growth below {MIN_GROWTH_MIB} MiB counts "
                                 f"as {MIN_GROWTH_MIB} MiB)"))
    cell_growth = cell["peak_mib"] - cell["baseline_mib"]
    figures.append(Figure("study cell peak RSS / process baseline after importing TensorFlow",
                          cell["peak_mib"] / cell["baseline_mib"], cell["peak_mib"], cell["baseline_mib"], "MiB",
                          f"quickstart cell (train {cell['train']}, attack {cell['limit']} images); growth "
                          f"{cell_growth:.0f} MiB"))
    details = "\n".join([
        f"JSMA (untargeted, gamma {JSMA_GAMMA}, theta +1) on an untrained float FCN2, {batch} Fashion-MNIST test "
        "images (784 pixels) in one batch; peak RSS growth over the child's baseline after TensorFlow and the "
        "model loaded.", "",
        "| JSMA pair selection | baseline (MiB) | peak (MiB) | growth (MiB) |", "|---|---:|---:|---:|",
        *(f"| {k} | {v['baseline_mib']:.0f} | {v['peak_mib']:.0f} | {growth[k]:.0f} |" for k, v in jsma.items()),
        "", f"Adversarial examples of the two algorithms bit-identical: **{equal}**.", "",
        f"Study cell: `python -m edgebnn.recipes run quickstart` with one training epoch on a {cell['train']} / "
        f"{cell['test']} carve of Fashion-MNIST's train split, FGSM and PGD-40 curves on {cell['limit']} images, "
        f"no strong evaluation and no deployment: baseline {cell['baseline_mib']:.0f} MiB (Python, TensorFlow, "
        f"edgebnn imported), peak {cell['peak_mib']:.0f} MiB.",
    ])
    return Result("Peak memory: JSMA and one study cell", figures, details)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    j = sub.add_parser("jsma")
    j.add_argument("--algorithm", choices=["blocks", "whole"], required=True)
    j.add_argument("--batch", type=int, required=True)
    j.add_argument("--out", required=True)
    c = sub.add_parser("cell")
    c.add_argument("--out", required=True)
    c.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = _jsma_child(args) if args.what == "jsma" else _cell_child(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
