"""The recipe key reference of the documentation site lists every key of the recipe schema."""

import re
import typing

import pytest

from edgebnn.recipes import config, keyref


def schema_keys():
    """Every dotted key of the recipe schema, walked here independently of the page's generator."""
    keys = set()

    def walk(cls, prefix, seen):
        for name, field in cls.model_fields.items():
            keys.add(prefix + name)
            sub = config._unwrap(field.annotation)
            if sub is not None and sub not in seen:
                walk(sub, f"{prefix}{name}.", seen | {sub})

    walk(config.recipe_model(), "", frozenset())
    walk(config._StudyKeys, "", frozenset())
    return keys


def page_keys(text):
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))


def test_the_page_lists_every_schema_key_with_type_default_and_meaning():
    text = keyref.markdown()
    keys = schema_keys()
    assert page_keys(text) == keys
    assert {"model.file", "model.builder", "data.files", "train.tensorboard", "certify.eps",
            "robustness.square_queries", "attacks.name"} <= keys
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 4 and all(cells), line
    assert "| `train.epochs` | int >= 1 | `1` |" in text


def test_a_key_without_a_meaning_fails_the_page(monkeypatch):
    monkeypatch.delitem(keyref.MEANINGS, "data.files")
    with pytest.raises(KeyError, match=r"recipe key `data.files` has no meaning"):
        keyref.markdown()


def test_meanings_name_only_schema_keys():
    assert set(keyref.MEANINGS) <= schema_keys()


def test_type_names_are_readable():
    assert keyref.type_name(typing.Literal["a", "b"]) == "`a` / `b`"
    assert keyref.type_name(list[float]) == "list of float"
    assert keyref.type_name(int | None) == "int or none"
