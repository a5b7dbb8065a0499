"""``python -m edgebnn.recipes``: list and run recipe files, and write the results page.

Examples:
    python -m edgebnn.recipes list
    python -m edgebnn.recipes run quickstart --out runs/quickstart --set train.epochs=1
    python -m edgebnn.recipes run fcn2_discretization --set 'grid.model.input_bits=[2, 4]'
    python -m edgebnn.recipes run guan/table1 --out runs/guan_table1 --cache runs/cache
    python -m edgebnn.recipes run galloway/table1 --workers 2
    python -m edgebnn.recipes run galloway/table1 --executor ray --address HEAD:6379
    python -m edgebnn.recipes results runs/ --out docs/results.md

Rerunning a command into the same ``--out`` reuses every finished model and result;
runs given the same ``--cache`` folder share them (see :mod:`edgebnn.recipes.store`).
"""

import argparse
import os
import shlex
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the CLI

import edgebnn  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import recipes  # noqa: E402
from edgebnn.recipes import interrupts  # noqa: E402

#: Exit status for bad input (recipe, options, data); 1 is left to Python for bugs.
EXIT_BAD_INPUT = 2
#: Exit status after Ctrl-C (128 + SIGINT, as a shell reports it); after SIGTERM, 128 + SIGTERM.
EXIT_INTERRUPTED = 130
#: Set to 1 to see the full traceback behind a one-line error.
DEBUG_ENV = "EDGEBNN_DEBUG"


def _parser():
    parser = argparse.ArgumentParser(prog="python -m edgebnn.recipes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the available recipes")
    run = commands.add_parser("run", help="run a recipe (every cell of a study): train, evaluate, convert, verify, report")
    run.add_argument("recipe", help="recipe name (see `list`) or path to a .toml file")
    run.add_argument("--out", help="output folder (default: runs/NAME)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe value, e.g. train.epochs=1, attacks.0.eps=[0.1] or "
                          "grid.model.input_bits=[2,4] (repeatable)")
    run.add_argument("--budget", metavar="NAME",
                     help="a smaller budget the recipe names (e.g. quick, a smoke test); default: the recipe's "
                          "own defaults, for a paper recipe the paper's budget")
    run.add_argument("--cache", metavar="DIR",
                     help="folder for trained models and results shared by runs (default: OUT/store); "
                          "recipes that train the same model then train it once")
    run.add_argument("--workers", metavar="N",
                     help="run independent cells in N local processes sharing the store, each with "
                          "cores/N TensorFlow threads (default: 1, every cell in this process)")
    run.add_argument("--threads", metavar="T",
                     help="TensorFlow threads of each process computing cells (default: every core serially, "
                          "cores/N with --workers N, 1 per Ray task); equal threads give bit-identical numbers")
    run.add_argument("--executor", metavar="NAME",
                     help="where the cells run: serial, processes (the default with --workers > 1) or ray "
                          "(each cell a Ray task; pip install 'edgebnn[ray]')")
    run.add_argument("--address", metavar="ADDR",
                     help="with --executor ray: the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    results = commands.add_parser("results", help="write the results page from run folders (report.json)")
    results.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                         help="a run's --out folder, or a folder searched recursively for report.json")
    results.add_argument("--out", default=os.path.join("docs", "results.md"),
                         help="the page to write (default: docs/results.md)")
    return parser


def _list():
    """Each recipe's name and description, read from its TOML alone: listing imports no
    TensorFlow (``run`` validates a recipe in full)."""
    found = recipes.available()
    if not found:
        print(f"no recipes found in {[str(d) for d in recipes.recipe_dirs()] or 'recipes/'}")
    for name, path in found.items():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
            description = table.get("description", "") if table else "INVALID: the recipe file is empty"
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            description = f"INVALID: not valid TOML ({e})"
        print(f"{name:24s} {description}  ({path})")


def _run(args, argv):
    from edgebnn.recipes.config import load  # noqa: PLC0415
    from edgebnn.recipes.runner import run  # noqa: PLC0415

    executor = _executor(args)
    recipe = load(recipes.find(args.recipe), overrides=args.overrides, budget=args.budget)
    if args.cache is not None and os.path.exists(args.cache) and not os.path.isdir(args.cache):
        raise ValueError(f"--cache must be a folder, got the file {args.cache!r}")
    run(recipe, args.out or os.path.join("runs", recipe.name), cache=args.cache, command=_command(argv),
        executor=executor)


def _executor(args):
    """The executor ``--executor`` / ``--workers`` / ``--address`` ask for (checked before anything loads)."""
    from edgebnn.recipes import executors  # noqa: PLC0415

    workers, threads = _positive(args.workers, "--workers"), _positive(args.threads, "--threads")
    name = args.executor or ("processes" if workers is not None and workers > 1 else "serial")
    return executors.make(name, workers=workers, threads=threads, address=args.address)


def _positive(text, name):
    """The positive integer option ``name`` given as ``text`` (``None`` if not given)."""
    from edgebnn.recipes.executors import check_positive  # noqa: PLC0415

    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {text!r}") from None
    return check_positive(value, name)


def _command(argv):
    """The command line as a user would type it again (every ``--set`` included)."""
    return "python -m edgebnn.recipes " + " ".join(shlex.quote(a) for a in argv)


def _results(args, argv):
    from edgebnn.recipes.results import write_page  # noqa: PLC0415

    write_page(args.run_dirs, args.out, command=_command(argv))
    print(f"wrote {args.out}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        with interrupts.signals_interrupt():
            commands = {"list": _list, "run": lambda: _run(args, argv), "results": lambda: _results(args, argv)}
            commands[args.command]()
    except (edgebnn.EdgebnnError, ValueError, TypeError, OSError) as e:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: {e}  (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        resume = " rerun the same command to resume;" if args.command == "run" else ""
        by = "" if interrupts.cause(e) == "Ctrl-C" else f" ({interrupts.cause(e)})"
        print(f"interrupted{by}:{resume} finished epochs, results and attack batches are kept", file=sys.stderr)
        return interrupts.exit_status(e)
    return 0


def exit_with(code):
    """End the process with ``code``. A run stopped by a signal (``128 + signal``) has written all it
    keeps (results, batches, its report) before :func:`main` returns, so it flushes its output and
    ends at once, without the interpreter's teardown of TensorFlow's runtime, which takes seconds:
    a stop request is answered in about the time to the next stop point."""
    if code in interrupts.STOP_STATUSES:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_with(main())
