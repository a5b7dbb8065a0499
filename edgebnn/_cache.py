"""One cache entry per model that does not keep the model alive."""

import weakref


def per_model(cache, model, make):
    """``cache[model]``, built by ``make(get_model)`` on first use.

    ``cache`` is a :class:`weakref.WeakKeyDictionary`; ``make`` receives a zero-argument
    function returning the model (a weak reference when the entry is cached, so the entry
    never keeps its own key alive). A model that cannot be weakly referenced gets a fresh,
    uncached entry on every call.
    """
    try:
        return cache[model]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable
        return make(lambda: model)
    entry = cache[model] = make(weakref.ref(model))
    return entry
