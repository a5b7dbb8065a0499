"""MkDocs hooks: the generated pages and the files the docs link to from outside ``docs/``.

- ``recipe-keys.md``: the recipe key reference, generated from the recipe schema
  (:func:`edgebnn.recipes.keyref.markdown`);
- ``benchmarks.md``: the repository's ``BENCHMARKS.md``;
- ``results/...``: the figures and JSON files of ``results/`` (not its Markdown reports),
  which ``results.md`` links to as ``../results/...`` (rewritten to ``results/...``
  inside the site so that the links resolve).
"""

import os
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
#: Files of results/ copied into the site (figures and their data; not the reports).
RESULT_SUFFIXES = (".png", ".svg", ".json")
_RESULTS_LINK = re.compile(r"\]\(\.\./results/")
#: A link to a figure of results/: shown as the figure itself (linking to its full size).
_FIGURE_LINK = re.compile(r"\[([^\]]+)\]\(\.\./results/([^)]+\.(?:png|svg))\)")


def on_files(files, config):
    """Add the generated pages and the results' figures to the site."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgebnn.recipes import keyref

    files.append(File.generated(config, "recipe-keys.md", content=keyref.markdown()))
    files.append(File.generated(config, "benchmarks.md", content=(ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")))
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.suffix in RESULT_SUFFIXES:
            files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Links from ``docs/`` into ``../results/`` point at the copies inside the site; links to
    figures show the figure."""
    markdown = _FIGURE_LINK.sub(r"[![\1](results/\2)](results/\2)", markdown)
    return _RESULTS_LINK.sub("](results/", markdown)
