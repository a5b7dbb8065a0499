"""Per-model cache entries that do not keep their model alive."""

import gc
import weakref

from edgebnn._cache import per_model


class _Model:
    def __call__(self, x):
        return x + 1


def test_entry_is_built_once_and_does_not_keep_its_model_alive():
    cache, built = weakref.WeakKeyDictionary(), []

    def make(get_model):
        built.append(1)
        return lambda x: get_model()(x) * 2

    model = _Model()
    first = per_model(cache, model, make)
    assert per_model(cache, model, make) is first and len(built) == 1 and first(1) == 4
    del model
    gc.collect()
    assert len(cache) == 0


def test_a_model_without_weak_references_gets_a_fresh_uncached_entry():
    cache = weakref.WeakKeyDictionary()
    model = (lambda x: x + 1).__call__  # a bound method-wrapper: not weak-referenceable
    entries = [per_model(cache, model, lambda get_model: [get_model()(1)]) for _ in range(2)]
    assert entries == [[2], [2]] and entries[0] is not entries[1] and len(cache) == 0
