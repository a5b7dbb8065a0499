"""Studies end to end: the runner's numbers against direct API calls, the cache, the lock, figures."""

import json
import shutil
import textwrap

import numpy as np
import pytest

from conftest import (
    TINY_CERTIFY, attack, lines_console, mc_cell, probe, small_study, transfer_cell, two_cell_study,
)
from edgebnn import data as data_lib
from edgebnn.evaluation.metrics import attack_metrics, perturbation_metrics, targets_for
from edgebnn.recipes import config, executors, runner
from edgebnn.recipes.assemble import without_timings
from edgebnn.recipes.evaluations import KINDS, entries
from edgebnn.recipes.store import RunLock, Store

import tensorflow as tf

TINY = two_cell_study(
    "tiny",
    rest="""
        [[figures]]
        kind = "accuracy_vs_eps"
        name = "fgsm_curve"
        attack = "fgsm"
        series = ["model.precision"]
    """,
)


def _study(tmp_path, text, overrides=(), data_dir=None):
    path = tmp_path / "study.toml"
    path.write_text(text)
    if data_dir is not None:
        overrides = [f'data.data_dir="{data_dir}"', *overrides]
    return config.load(path, overrides=overrides)


def _run(study, out):
    console = lines_console()
    report = runner.run(study, out, console=console)
    return report, console.lines


def _model(out, report, cell):
    [entry] = [c for c in report["cells"] if c["id"] == cell]
    return tf.keras.models.load_model(out / "store" / "models" / entry["model_key"] / "model.keras", compile=False)


# --- metrics against NumPy references ------------------------------------------------


def test_attack_metrics_reference():
    x = np.zeros((4, 2, 2, 1))
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] = 0.3  # L2 0.3, Linf 0.3
    x_adv[1] = 0.1  # L2 0.2, Linf 0.1
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])  # the last image is already wrong: not attempted
    adv = np.array([5, 1, 7, 3])
    m = attack_metrics(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv)
    assert m["accuracy"] == 0.5 and m["attempted"] == 3 and m["successes"] == 2
    assert m["success_rate"] == pytest.approx(2 / 3)
    assert m["l2_mean"] == pytest.approx(0.15) and m["linf_median"] == pytest.approx(0.15)  # images 0 and 2
    assert m["linf_max"] == pytest.approx(0.3)  # over every adversarial example, successful or not
    targeted = attack_metrics(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv, targets=np.array([5, 2, 7, 3]))
    assert targeted["success_rate"] == 0.75 and targeted["attempted"] == 4
    assert perturbation_metrics(x, x_adv, np.zeros(4, bool))["l2_mean"] is None


def test_targets_all_and_random():
    y = np.array([0, 3])
    index, targets = targets_for(y, mode="all", num_classes=4, rng=np.random.default_rng(0))
    assert index.tolist() == [0, 0, 0, 1, 1, 1] and targets.tolist() == [1, 2, 3, 0, 1, 2]
    index, targets = targets_for(np.arange(10) % 4, mode="random", num_classes=4, rng=np.random.default_rng(0))
    assert index.tolist() == list(range(10)) and np.all(targets != np.arange(10) % 4)


# --- a small study on real data --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("tiny")
    study = _study(tmp, TINY, data_dir=data_dir)
    out = tmp / "run"
    report, lines = _run(study, out)
    return study, out, report, lines


def _store_of_the_tiny_run(tiny_run, out):
    """Start the run folder ``out`` with a copy of the tiny run's store: a study whose cell has the data,
    model and training of the tiny run's binary cell finds it trained, with its clean and FGSM results."""
    shutil.copytree(tiny_run[1] / "store", out / "store")


def test_report_numbers_equal_direct_api_calls(tiny_run, data_dir):
    from edgebnn.evaluation import craft, predict_labels

    study, out, report, _ = tiny_run
    assert report["status"] == "complete" and len(report["cells"]) == 2
    x_test, y_test = data_lib.load("fashion_mnist", "test", data_dir=data_dir, limit=120, seed=0)
    for cell in report["cells"]:
        model = _model(out, report, cell["id"])
        clean = [r for r in cell["results"] if r["evaluation"] == "clean"][0]
        assert clean["accuracy"] == np.mean(predict_labels(model, x_test) == y_test)
        for r in (r for r in cell["results"] if r["evaluation"] == "attacks"):
            x_adv = craft(model, x_test[:60], y_test[:60], attack="fgsm", eps=r["eps"], batch_size=30)
            pred = predict_labels(model, x_adv)
            assert r["accuracy"] == np.mean(pred == y_test[:60])
            expected = attack_metrics(x=x_test[:60], x_adv=x_adv, y=y_test[:60],
                                      clean_pred=predict_labels(model, x_test[:60]), adv_pred=pred)
            for key in ("success_rate", "l2_mean", "linf_mean"):
                assert r[key] == pytest.approx(expected[key], rel=1e-6), key
    table = report["tables"][0]
    assert table["columns"] == [["clean", 0.0], ["fgsm", 0.1], ["fgsm", 0.2]]
    assert "| precision=float |" in (out / "report.md").read_text()
    assert "evaluations on the first 60 images of the test part" in report["data_caption"]


def _assert_declared_metrics(study, out, report):
    """Every stored result of every entry holds exactly the metric names its kind declares for the entry."""
    store = Store(out)
    for cell in study.cells:
        for kind, where, spec in entries(cell.recipe):
            keys = [u for u in report["records"] if u["cell"] == cell.name and u["evaluation"] == kind]
            assert keys, (cell.name, where)
            for record in keys:
                stored = store.load_result(record["key"])["metrics"]
                assert set(stored) == set(KINDS[kind].metrics(spec, recipe=cell.recipe)), (cell.name, where)


def test_every_result_holds_exactly_the_metrics_its_kind_declares(tiny_run):
    study, out, report, _ = tiny_run
    _assert_declared_metrics(study, out, report)


def test_figure_files_decode_and_hold_the_curves(tiny_run):
    import matplotlib.image

    _, out, report, _ = tiny_run
    image = matplotlib.image.imread(out / "figures" / "fgsm_curve.png")
    assert image.ndim == 3 and image.shape[0] > 100
    behind = json.loads((out / "figures" / "fgsm_curve.json").read_text())["data"]
    assert sorted(behind) == ["precision=binary", "precision=float"]
    for precision, curve in behind.items():
        assert curve["eps"] == [0.0, 0.1, 0.2]
        cell = [c for c in report["cells"] if c["id"] == precision][0]
        by_eps = {0.0 if r["evaluation"] == "clean" else r["eps"]: r["accuracy"] for r in cell["results"]}
        assert curve["mean"] == [by_eps[e] for e in curve["eps"]]
    assert "![FGSM" not in (out / "report.md").read_text() and "figures/fgsm_curve.png" in (out / "report.md").read_text()


def test_stored_model_holds_the_weights_without_the_optimizer(tiny_run):
    import io
    import zipfile

    import h5py

    _, out, report, _ = tiny_run
    for cell in report["cells"]:
        path = out / "store" / "models" / cell["model_key"] / "model.keras"
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            groups = []
            f.visit(groups.append)
        assert groups and not any(g.split("/")[0] == "optimizer" for g in groups)
        model = _model(out, report, cell["id"])
        assert model.count_params() == cell["model"]["parameters"]


def test_rerun_computes_nothing_and_an_added_attack_only_itself(tiny_run, tmp_path):
    study, out, report, _ = tiny_run
    again, lines = _run(study, out)
    assert again["computed_seconds"] == 0
    assert not any("training" in line for line in lines)
    assert again["records"] == report["records"]
    bigger = TINY.replace("[deploy]", '[[attacks]]\nname = "pgd"\neps = [0.1]\nsteps = 3\n[deploy]')
    more = _study(tmp_path, bigger, overrides=[f'data.data_dir="{study.cells[0].recipe.data.data_dir}"'])
    extended, lines = _run(more, out)
    computed = [line for line in lines if line.endswith("s)") and "(cached)" not in line]
    assert computed and all("pgd eps=0.1" in line for line in computed)
    assert [r for r in extended["records"] if r["attack"] != "pgd"] == report["records"]


def test_a_second_run_on_the_folder_is_refused(tiny_run):
    study, out, _, _ = tiny_run
    with RunLock(out):
        with pytest.raises(config.RecipeError, match=r"another run \(pid \d+\) is using"):
            runner.run(study, out, console=lines_console())


def test_workers_give_the_serial_report(tiny_run, tmp_path):
    """The study run in two worker processes (``--workers 2``) gives the tiny run's report (the same
    study, run serially in this process), minus timings (see test_executors.py for the other executors)."""
    study, _, expected, _ = tiny_run
    # numbers are bit-identical at equal threads per cell: the workers get as many as this process has
    threads = tf.config.threading.get_intra_op_parallelism_threads() or executors.cores()
    console = lines_console()
    report = runner.run(study, tmp_path / "parallel", console=console,
                        executor=executors.Processes(workers=2, threads=threads))
    assert report["status"] == "complete"
    assert without_timings(report) == without_timings(expected)
    assert any(f"2 cells on 2 worker processes, {threads} TensorFlow thread" in line for line in console.lines)
    for worker in (1, 2):  # each worker's progress lines reach the driver's console
        assert any(f"worker {worker}: cell " in line for line in console.lines), console.lines
    # a rerun finds every cell in the store and starts no worker
    again = lines_console()
    report = runner.run(study, tmp_path / "parallel", console=again, executor=executors.Processes(workers=2, threads=1))
    assert without_timings(report) == without_timings(expected)
    assert sum("found in the cache" in line for line in again.lines) == 2
    assert not any("worker process" in line for line in again.lines)


def test_bad_option_values_fail_before_training(tmp_path, data_dir):
    text = TINY.replace("[deploy]", '[[cells]]\nname = "a"\n"attacks.0.eps" = [0.1]\n[deploy]') + textwrap.dedent(
        """
        [[cells.attacks]]
        name = "pgd"
        eps = 0.1
        steps = 0
        """
    )
    study = _study(tmp_path, text, data_dir=data_dir)
    console = lines_console()
    with pytest.raises(config.RecipeError, match=r"cell 'a,precision=float': `attacks.0`: `steps` must be a positive int"):
        runner.run(study, tmp_path / "run", console=console)
    assert not any("training" in line for line in console.lines)


def test_a_failed_rerun_keeps_the_complete_report_and_its_outputs(tiny_run, tmp_path, data_dir, monkeypatch):
    single = TINY.split("[grid]")[0].replace("enabled = false", "enabled = false")
    study = _study(tmp_path, single, data_dir=data_dir)
    out = tmp_path / "run"
    _store_of_the_tiny_run(tiny_run, out)
    _run(study, out)
    assert (out / "model.keras").is_file() and json.loads((out / "report.json").read_text())["status"] == "complete"
    complete = (out / "report.json").read_text()
    from edgebnn.recipes.evaluations import KINDS

    def broken(unit, ctx):
        raise RuntimeError("attack crashed")

    monkeypatch.setattr(KINDS["attacks"], "run", broken)
    changed = _study(tmp_path, single, overrides=["attacks.0.eps=[0.3]"], data_dir=data_dir)
    console = lines_console()
    with pytest.raises(RuntimeError, match="attack crashed"):
        runner.run(changed, out, console=console)
    assert (out / "report.json").read_text() == complete and (out / "model.keras").is_file()  # the earlier run's
    assert any("the earlier complete report is kept" in line for line in console.lines)
    incomplete = out / runner.INCOMPLETE
    report = json.loads((incomplete / "report.json").read_text())
    assert report["status"] == "failed" and "attack crashed" in report["error"]
    assert not (incomplete / "model.keras").exists()  # the failed run wrote no model beside its report
    clean = [r for r in report["records"] if r["evaluation"] == "clean"]
    assert len(clean) == 1  # what finished still reached the report
    assert "**failed**" in (incomplete / "report.md").read_text()
    monkeypatch.undo()
    _run(changed, out)  # a complete rerun replaces the report and clears the incomplete one
    assert json.loads((out / "report.json").read_text())["status"] == "complete"
    assert not incomplete.exists() and not (out / runner.PREVIOUS).exists()


def test_offline_mnist_split_in_the_caption(tmp_path, data_dir):
    text = TINY.split("[grid]")[0].replace('dataset = "fashion_mnist"\ntrain_limit = 300\ntest_limit = 120',
                                          'dataset = "mnist"\nsplit = { train = 200, test = 80, seed = 3 }')
    study = _study(tmp_path, text, overrides=["attacks=[]"], data_dir=data_dir)  # the caption needs no attack
    report, _ = _run(study, tmp_path / "run")
    assert report["dataset"] == {"name": "mnist", "train_size": 200, "test_size": 80, "attack_size": 60}
    assert ("mnist official test split (10,000 images), carved with seed 3 into a class-stratified 200-image "
            "train part and a disjoint 80-image test part") in report["data_caption"]
    assert report["data_caption"] in (tmp_path / "run" / "report.md").read_text()


FULL = small_study(
    "full",
    data=dict(train_limit=300, test_limit=200),
    model=dict(precision="binary", input_bits=2),
    evaluation=dict(limit=40, batch_size=40),
    attacks=[
        attack("fgsm", eps=[0.1]),
        attack("cw_l2", targets="all", max_iterations=5, binary_search_steps=1),
        attack("substitute", eps=0.3, holdout=30, rounds=2, epochs=2),
    ],
    rest=probe("dense_1", attack="fgsm", eps=0.1) + textwrap.dedent("""
        [deploy]
        enabled = true
        [grid]
        "model.precision" = ["float", "binary"]
        "model.input_bits" = [2, 8]
        [[cells]]
        name = "adv"
        grid = false
        train.adversarial = { method = "fgsm", eps = 0.1, mode = "augment" }
    """) + mc_cell(passes=5, fit=60, attacks=[{"name": "fgsm", "eps": 0.1}]) + transfer_cell(
        "precision=float,input_bits=8") + textwrap.dedent("""
        [[figures]]
        kind = "uncertainty_histogram"
        name = "mc_uncertainty"
        cell = "mc"
    """),
)


@pytest.mark.slow
def test_full_study_against_direct_api_calls(tmp_path, data_dir):
    from edgebnn.evaluation import craft, predict_labels, predict_mc
    from edgebnn.recipes.evaluations.probe import mean_l1

    study = _study(tmp_path, FULL, data_dir=data_dir)
    assert [c.name for c in study.cells][-3:] == ["adv", "mc", "transfer"] and len(study.cells) == 7
    out = tmp_path / "run"
    report, _ = _run(study, out)
    assert report["status"] == "complete"
    _assert_declared_metrics(study, out, report)
    x_test, y_test = data_lib.load("fashion_mnist", "test", data_dir=data_dir, limit=200, seed=0)
    x, y = x_test[:40], y_test[:40]
    cells = {c["id"]: c for c in report["cells"]}

    def result(cell, evaluation, **labels):
        found = [r for r in cells[cell]["results"] if r["evaluation"] == evaluation
                 and all(r.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, (cell, evaluation, labels)
        return found[0]

    # grid cell: clean, FGSM, targeted CW on every wrong class, substitute, probe, deployment
    model = _model(out, report, "precision=binary,input_bits=2")
    assert result("precision=binary,input_bits=2", "clean")["accuracy"] == np.mean(predict_labels(model, x_test) == y_test)
    x_adv = craft(model, x, y, attack="fgsm", eps=0.1, batch_size=40)
    assert result("precision=binary,input_bits=2", "attacks", attack="fgsm")["accuracy"] == np.mean(
        predict_labels(model, x_adv) == y)
    cw = result("precision=binary,input_bits=2", "attacks", attack="cw_l2")
    assert cw["images"] == 40 * 9 and cw["targets"] == "all" and 0 <= cw["success_rate"] <= 1
    assert cw["successes"] == 0 or cw["l2_mean"] > 0
    substitute = result("precision=binary,input_bits=2", "attacks", attack="substitute")
    assert substitute["images"] == 40 and 0 <= substitute["accuracy"] <= 1
    probe = result("precision=binary,input_bits=2", "probes", layer="dense_1")
    import tensorflow as tf

    layer = tf.keras.Model(model.inputs, model.get_layer("dense_1").output)
    assert probe["l1_clean"] == pytest.approx(mean_l1(layer(x)), rel=1e-5)
    assert probe["l1_adversarial"] == pytest.approx(mean_l1(layer(x_adv)), rel=1e-5)
    deployed = cells["precision=binary,input_bits=2"]["deployed"]
    assert deployed["deployed"] and deployed["agreement_clean"] >= 0.99
    assert deployed["adversarial_examples"] == 40 + 360 + 40  # FGSM, CW (9 targets) and substitute examples
    # adversarially trained cell
    assert cells["adv"]["train"]["adversarial"]["mode"] == "augment"
    assert cells["adv"]["train"]["adversarial_linf_bound"] == pytest.approx(0.1)  # FGSM: eps itself
    adv_model = _model(out, report, "adv")
    assert result("adv", "clean")["accuracy"] == np.mean(predict_labels(adv_model, x_test) == y_test)
    # Monte-Carlo cell: S and M, uncertainty, detection, not deployable, EOT
    mc = result("mc", "clean")
    assert cells["mc"]["model"]["randomized"] and cells["mc"]["eot_samples"] == 10
    assert not cells["mc"]["deployed"]["deployed"] and "random at inference" in cells["mc"]["deployed"]["reason"]
    mc_model = _model(out, report, "mc")
    direct = predict_mc(mc_model, x, samples=5)
    assert abs(mc["accuracy_mc"] - np.mean(direct.classes == y)) <= 0.15  # random passes: close, not equal
    assert mc["uncertainty_mean"] > 0
    assert result("mc", "attacks", attack="fgsm")["eot_samples"] == 10
    detection = result("mc", "detection", attack="fgsm")
    assert 0 <= detection["detection_auc"] <= 1 and detection["fit_images"] == 60
    histogram = json.loads((out / "figures" / "mc_uncertainty.json").read_text())["data"]
    assert sorted(histogram["sets"]) == ["clean", "fgsm eps 0.1"]
    assert sum(histogram["sets"]["clean"]["counts"]) == 40
    # transfer cell: crafted on another cell's model, evaluated on this one
    source = _model(out, report, "precision=float,input_bits=8")
    target = _model(out, report, "transfer")
    x_transfer = craft(source, x, y, attack="fgsm", eps=0.1, batch_size=40)
    assert result("transfer", "attacks", source="precision=float,input_bits=8")["accuracy"] == np.mean(
        predict_labels(target, x_transfer) == y)
    markdown = (out / "report.md").read_text()
    assert "randomized at inference: attacked with EOT" in markdown and "not deployed" in markdown


#: The small budget of the strong-evaluation tests' ``[[robustness]]`` entries (one surrogate, short attacks).
STRONG_BUDGET = textwrap.dedent(
    """
    surrogates = ["clipped"]
    steps = 5
    pgd_steps = 3
    restarts = 1
    target_classes = 2
    square_queries = 30
    """
)


def test_strong_evaluation_kind_reports_the_ensemble_and_the_checks(tiny_run, tmp_path, data_dir):
    text = TINY.replace('[grid]\n"model.precision" = ["float", "binary"]\n', "") + textwrap.dedent(
        """
        [[robustness]]
        eps = [0.1]
        limit = 20
        """
    ) + STRONG_BUDGET
    out = tmp_path / "run"
    study = _study(tmp_path, text, data_dir=data_dir)
    _store_of_the_tiny_run(tiny_run, out)
    report, _ = _run(study, out)
    _assert_declared_metrics(study, out, report)
    [cell] = report["cells"]
    [record] = [r for r in cell["results"] if r["evaluation"] == "robustness"]
    strong = record["report"]
    assert record["images"] == strong["n"] == 20
    [at_eps] = strong["results"]
    robust = at_eps["autoattack"]["all"]["robust_accuracy"]
    assert record["robust_accuracy"] == {"0.1": robust}
    # The ensemble is the per-example worst case: no single attack of it leaves more correct.
    assert robust <= min(at_eps["accuracy"][name] for name in ("apgd-ce/clipped", "apgd-t/clipped", "square"))
    assert {c["check"] for c in strong["checks"] + at_eps["checks"]} >= {
        "large_eps", "zero_gradients", "randomness_eot", "iterative_vs_single", "convergence"}
    markdown = (out / "report.md").read_text()
    assert "Strong evaluation (20 images)" in markdown and "Gradient-masking checks" in markdown
    again, lines = _run(_study(tmp_path, text, data_dir=data_dir), out)
    assert any("strong evaluation" in line and "(cached)" in line for line in lines)



#: A study whose only long evaluation is a small strong evaluation: 10 images, attacked in batches of 5
#: (two batches per attack run, seven runs).
STRONG = small_study(
    "strong", model=dict(precision="float", options={"hidden_units": 64}), train="epochs = 3\nbatch_size = 32",
    evaluation="limit = 10\nbatch_size = 5",
    rest="[deploy]\nenabled = false\n[[robustness]]\neps = [0.02]\n" + STRONG_BUDGET,
)


def _stop_after_saves(monkeypatch, saves):
    """Make :class:`~edgebnn.recipes.store.Batches` raise Ctrl-C right after its ``saves``-th stored batch."""
    from edgebnn.recipes.store import Batches  # noqa: PLC0415

    save, count = Batches.save, [0]

    def save_then_stop(self, call, index, array):
        save(self, call, index, array)
        count[0] += 1
        if count[0] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(Batches, "save", save_then_stop)
    return lambda: monkeypatch.setattr(Batches, "save", save)


@pytest.mark.slow
def test_an_interrupted_strong_evaluation_keeps_its_finished_batches_and_resumes_to_the_same_report(
        tmp_path, data_dir, monkeypatch):
    from edgebnn.evaluation import masking  # noqa: PLC0415
    from edgebnn.evaluation.robustness import craft  # noqa: PLC0415

    study = _study(tmp_path, STRONG, data_dir=data_dir)
    whole, _ = _run(study, tmp_path / "whole")

    restore = _stop_after_saves(monkeypatch, 3)  # the large-eps run and the first batch of FGSM
    with pytest.raises(KeyboardInterrupt):
        _run(study, tmp_path / "stopped")
    assert json.loads((tmp_path / "stopped" / "report.json").read_text())["status"] == "interrupted"
    restore()
    crafted = []
    monkeypatch.setattr(masking, "craft", lambda *a, **k: crafted.append(len(a[1])) or craft(*a, **k))
    resumed, lines = _run(study, tmp_path / "stopped")
    assert any(line.endswith("strong evaluation eps=0.02 ... (resuming: 3 finished batches kept)")
               for line in lines), lines
    assert crafted == [5] * (7 * 2 - 3)  # seven runs of two batches, three of them kept

    [ours], [theirs] = ([r for r in report["records"] if r["evaluation"] == "robustness"] for report in (resumed, whole))
    assert ours["report"]["n"] == 10
    assert ours["report"] == theirs["report"]  # every accuracy, ensemble breakdown and check, bit for bit
    assert ours["robust_accuracy"] == theirs["robust_accuracy"]
    partial = tmp_path / "stopped" / "store" / "partial"
    assert not partial.exists() or not any(partial.iterdir())


#: A study whose only long evaluation is the uncertainty detector of an MC-dropout cell: 20 fit and 20
#: evaluated images in batches of 10 (FGSM with EOT on each set, then the uncertainty of the four sets).
DETECTION = small_study("detection", evaluation="limit = 20\nbatch_size = 10",
                        rest="[deploy]\nenabled = false\n" + mc_cell(passes=4, fit=20, attacks=[]))


@pytest.mark.slow
def test_an_interrupted_detection_keeps_its_finished_batches_and_resumes_to_the_same_numbers(
        tmp_path, data_dir, monkeypatch):
    study = _study(tmp_path, DETECTION, data_dir=data_dir)
    whole, _ = _run(study, tmp_path / "whole")

    restore = _stop_after_saves(monkeypatch, 2)  # the fit set's adversarial examples
    with pytest.raises(KeyboardInterrupt):
        _run(study, tmp_path / "stopped")
    assert json.loads((tmp_path / "stopped" / "report.json").read_text())["status"] == "interrupted"
    restore()
    resumed, lines = _run(study, tmp_path / "stopped")
    assert any(line.endswith("detection of fgsm eps=0.1 ... (resuming: 2 finished batches kept)")
               for line in lines), lines

    [ours], [theirs] = ([r for r in report["records"] if r["evaluation"] == "detection"] for report in (resumed, whole))
    assert ours["fit_images"] == 20 and ours["eot_samples"] > 1  # MC dropout: attacked and measured at random
    assert ours["uncertainty_fit_adversarial_mean"] > 0
    for key in KINDS["detection"].metrics(None, recipe=None):  # bit for bit: every draw is seeded by its batch
        assert ours[key] == theirs[key], key
    partial = tmp_path / "stopped" / "store" / "partial"
    assert not partial.exists() or not any(partial.iterdir())


# --- EOT against the plain single-sample attack on a randomized model ---------------------

GRADIENTS = textwrap.dedent(
    """
    name = "gradients"
    [data]
    dataset = "fashion_mnist"
    train_limit = 200
    test_limit = 80
    [model]
    family = "guan_lenet"
    precision = "float"
    options = { mc_dropout = true }
    [train]
    epochs = 1
    batch_size = 64
    [evaluation]
    limit = 30
    batch_size = 30
    eot_samples = 3
    [[attacks]]
    name = "fgsm"
    eps = 0.1
    [[attacks]]
    name = "fgsm"
    eps = 0.1
    gradient = "single"
    [deploy]
    enabled = false
    [[tables]]
    title = "EOT vs single"
    rows = ["cell"]
    columns = ["attack", "gradient"]
    """
)


def test_single_sample_attack_beside_eot_on_a_randomized_model(tmp_path, data_dir):
    study = _study(tmp_path, GRADIENTS, data_dir=data_dir)
    report, lines = _run(study, tmp_path / "run")
    attacks = {r["gradient"]: r for r in report["records"] if r["evaluation"] == "attacks"}
    assert set(attacks) == {"eot", "single"}
    assert attacks["eot"]["eot_samples"] == 3 and attacks["single"]["eot_samples"] == 1
    assert any("fgsm eps=0.1 single-sample" in line for line in lines)
    markdown = (tmp_path / "run" / "report.md").read_text().splitlines()
    header = [line for line in markdown if "fgsm eot" in line]
    assert header and "fgsm single" in header[0]
    assert sum(line.startswith("| fgsm (single-sample) | 0.1 |") for line in markdown) == 1  # the cell's section


@pytest.mark.parametrize("entry, match", [
    ('{ name = "fgsm", eps = 0.1, gradient = "single", eot_samples = 4 }', "remove `eot_samples`"),
    ('{ name = "fgsm", eps = 0.1, gradient = "mean" }', "gradient"),
    ('{ name = "substitute", eps = 0.1, gradient = "single" }', "takes no gradient samples"),
])
def test_gradient_option_validated(tmp_path, data_dir, entry, match):
    text = GRADIENTS.split("[[attacks]]")[0].replace('name = "gradients"\n', f'name = "gradients"\nattacks = [{entry}]\n')
    with pytest.raises(config.RecipeError, match=match):
        _study(tmp_path, text, data_dir=data_dir)


def test_uncertainty_histogram_upper_edge_and_single_sample_sets(tmp_path):
    """Against np.histogram: a fixed upper edge, values above it in the last bin, and the EOT
    and single-sample attack results of one attack as separate sets."""
    from edgebnn.recipes import figures

    rng = np.random.default_rng(0)
    values = {"clean": rng.uniform(0, 0.02, 50), "eot": rng.uniform(0, 0.05, 50), "single": rng.uniform(0, 0.05, 50)}
    records = [
        {"cell": "c", "repeat": 0, "evaluation": "clean", "attack": "clean", "eps": 0.0, "set": "clean"},
        {"cell": "c", "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "eot", "set": "eot"},
        {"cell": "c", "repeat": 0, "evaluation": "attacks", "attack": "fgsm", "eps": 0.3, "gradient": "single",
         "set": "single"},
    ]
    spec = config.FigureSpec(kind="uncertainty_histogram", name="h", cell="c", bins=7, upper=0.035)
    figure = figures.draw(spec, records, {}, lambda r, key: values[r["set"]], tmp_path)
    data = figure["data"]
    np.testing.assert_allclose(data["edges"], np.linspace(0, 0.035, 8))
    assert sorted(data["sets"]) == ["clean", "fgsm eps 0.3", "fgsm eps 0.3 single-sample"]
    expected, _ = np.histogram(np.minimum(values["single"], 0.035), bins=np.linspace(0, 0.035, 8))
    assert data["sets"]["fgsm eps 0.3 single-sample"]["counts"] == expected.tolist()
    assert sum(data["sets"]["fgsm eps 0.3"]["counts"]) == 50  # nothing dropped above the edge


# --- [[certify]]: exact robustness as an evaluation kind --------------------------------

CERTIFY = TINY_CERTIFY + textwrap.dedent(
    """
    [deploy]
    enabled = false
    [[tables]]
    title = "Certified robust accuracy"
    evaluation = "certify"
    """
)


@pytest.mark.slow
def test_certify_kind_against_direct_certification(tmp_path, data_dir):
    from edgebnn.certify import certify  # noqa: PLC0415

    out = tmp_path / "run"
    study = _study(tmp_path, CERTIFY, data_dir=data_dir)
    report, _ = _run(study, out)
    _assert_declared_metrics(study, out, report)
    records = {r["eps"]: r for r in report["records"] if r["evaluation"] == "certify"}
    assert set(records) == {0.02, 0.05} and all(r["attack"] == "certified" for r in records.values())
    model = _model(out, report, report["cells"][0]["id"])
    x, y = data_lib.load("fashion_mnist", "test", data_dir=data_dir, limit=40)
    for eps, r in records.items():
        assert r["robust"] + r["not_robust"] + r["unknown"] == r["n"] == 6
        assert r["accuracy"] == r["robust"] / 6 <= r["attack_accuracy"]
        assert r["attack_broke_certified"] == 0
        assert r["replayed_keras"] == r["replayed_tflite"] == r["counterexamples"] == r["not_robust"]
        direct = certify(model, x[:6], y[:6], eps=eps, time_limit=10)
        for ours, theirs in zip(r["report"]["results"][0]["examples"], direct.records):
            if "unknown" not in (ours["status"], theirs["status"]):
                assert ours["status"] == theirs["status"], (eps, ours, theirs)
    assert ["certified", 0.02] in report["tables"][0]["columns"]
    assert "Exact robustness" in (out / "report.md").read_text()


@pytest.mark.slow
def test_an_interrupted_certification_keeps_its_finished_parts_and_resumes_to_the_same_numbers(
        tmp_path, data_dir, monkeypatch):
    from edgebnn.recipes.evaluations import certify as certify_kind  # noqa: PLC0415
    from edgebnn.recipes.store import Batches  # noqa: PLC0415

    monkeypatch.setattr(certify_kind, "EXAMPLES_PER_PART", 2)
    study = _study(tmp_path, CERTIFY.replace("eps = [0.02, 0.05]", "eps = [0.05]").replace("limit = 6", "limit = 4"),
                   data_dir=data_dir)
    whole, _ = _run(study, tmp_path / "whole")

    save = Batches.save

    def save_then_stop(self, call, index, array):  # Ctrl-C right after the first part is stored
        save(self, call, index, array)
        raise KeyboardInterrupt

    monkeypatch.setattr(Batches, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _run(study, tmp_path / "stopped")
    assert json.loads((tmp_path / "stopped" / "report.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(Batches, "save", save)
    resumed, lines = _run(study, tmp_path / "stopped")
    assert any(line.endswith("certify eps=0.05 ... (resuming: 1 finished batch kept)") for line in lines), lines

    [ours], [theirs] = ([r for r in report["records"] if r["evaluation"] == "certify"] for report in (resumed, whole))
    assert ours["n"] == theirs["n"] == 4
    for key in ("clean_accuracy", "attack_accuracy", "refuted_by_attack"):
        assert ours[key] == theirs[key], key
    ours_rows, theirs_rows = (r["report"]["results"][0]["examples"] for r in (ours, theirs))
    assert [r["index"] for r in ours_rows] == [0, 1, 2, 3]
    for a, b in zip(ours_rows, theirs_rows):
        assert (a["clean_correct"], a["attack_broke"]) == (b["clean_correct"], b["attack_broke"])
        if "unknown" not in (a["status"], b["status"]):  # the solver's time limit may fall either way
            assert a["status"] == b["status"]
    assert not (tmp_path / "stopped" / "store" / "partial").exists() or not any(
        (tmp_path / "stopped" / "store" / "partial").iterdir())


@pytest.mark.parametrize("change, match", [
    (('precision = "binary"', 'precision = "float"'), r"`certify.0`: certify: unsupported layer 'dense_0'"),
    (("time_limit = 10", 'time_limit = 10\nsolver = "z3"'), r"`certify.0.solver` must be one of"),
    (("time_limit = 10", "time_limit = 0"), r"certify.0.time_limit"),
])
def test_certify_kind_refuses_bad_entries_before_training(tmp_path, data_dir, change, match):
    text = CERTIFY.replace(*change)
    with pytest.raises(config.RecipeError, match=match):
        runner.run(_study(tmp_path, text, data_dir=data_dir), tmp_path / "run", console=lines_console())


def test_accuracy_within_an_l2_budget_reference():
    from edgebnn.evaluation.metrics import accuracy_within_l2, median_l2_of_successes

    x = np.zeros((4, 2, 2, 1))
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] = 1.0  # L2 1.0
    x_adv[1, 0, :, 0] = 1.0  # L2 sqrt(2)
    x_adv[2, :, :, 0] = 1.0  # L2 2.0
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])  # the last image is wrong without attack
    adv = np.array([5, 6, 7, 3])  # the first three fooled; the last one unperturbed (L2 0) and right
    assert accuracy_within_l2(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv, budget=1.5) == 0.5  # images 2, 3
    assert accuracy_within_l2(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv, budget=0.5) == 1.0
    assert accuracy_within_l2(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv, budget=2.0) == 0.25
    assert median_l2_of_successes(x=x, x_adv=x_adv, y=y, adv_pred=adv) == pytest.approx(np.sqrt(2))
    assert np.isnan(median_l2_of_successes(x=x, x_adv=x, y=y, adv_pred=y))
    with pytest.raises(ValueError, match="`budget` must be >= 0"):
        accuracy_within_l2(x=x, x_adv=x_adv, y=y, clean_pred=clean, adv_pred=adv, budget=-1)
