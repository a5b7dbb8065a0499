"""Proof hygiene per image: no attack may break an image the verifier certified robust.

A ``robust`` answer is a proof that no input in the image's L-infinity ball changes the
prediction, so every attack run at the same eps on the same image must leave it correctly
classified. :func:`check_certified` confronts the certified images with the per-image
outcomes of every attack that ran on them (the certification's own attacks and any other
evaluation of the same images); a certified image that an attack broke means the verifier,
the encoding or the attack's bookkeeping is wrong, and is named in the result.

This module imports no TensorFlow.
"""

import numpy as np

#: Status of a check in which no attack broke a certified image.
PASS = "pass"
#: Status of a check in which an attack broke a certified image (the status that fails a recipe run,
#: :data:`edgebnn.recipes.evaluations.base.FAILED`).
FAIL = "fail"


def own_attacks(rows, names):
    """The certification's own attacks as per-image outcomes, from its per-example rows.

    Args:
        rows: the ``examples`` of one eps of :func:`edgebnn.certify.certify_report` (``index``,
            ``attacks_broke``: the names of the attacks that broke that clean-correct image).
        names: the names of the attacks the certification ran.

    Returns:
        ``{name: bool vector}``, ``True`` where attack ``name`` did not break the image of that
        index (images no row names count as not attacked: ``True``).
    """
    size = 1 + max((int(r["index"]) for r in rows), default=-1)
    out = {name: np.ones(size, bool) for name in names}
    for row in rows:
        for name in row.get("attacks_broke", []):
            if name not in out:
                raise ValueError(f"`rows`: image {row['index']} names the attack {name!r}, not one of `names` {names}.")
            out[name][int(row["index"])] = False
    return out


def check_certified(rows, attacks):
    """Whether any attack broke an image certified robust, image by image.

    Args:
        rows: per-example rows of one eps (``index`` into the evaluated images, ``status``).
        attacks: ``{attack name: outcomes}`` of every attack run at the same eps on the same
            images, ``outcomes`` a bool vector over the evaluated images from the first (``True``:
            still correctly classified; an attack that evaluated fewer images covers only those),
            or ``None`` for an attack whose per-image outcomes were not kept (named as unchecked).

    Returns:
        A JSON-able dict: ``status`` (:data:`PASS` or :data:`FAIL`), ``certified`` (robust
        answers), ``attacks`` (names checked per image), ``unchecked`` (names without per-image
        outcomes), ``checked_images`` (certified images at least one attack ran on),
        ``checked_pairs`` (certified image and attack pairs), ``broken`` (``[{"index", "attacks"}]``
        of the certified images some attack broke), ``broken_indices`` and ``message`` (one line).
    """
    certified = sorted(int(r["index"]) for r in rows if r["status"] == "robust")
    checked = {name: np.asarray(v, bool).ravel() for name, v in attacks.items() if v is not None}
    broken, images, pairs = [], 0, 0
    for index in certified:
        covering = [name for name, v in checked.items() if index < len(v)]
        images += bool(covering)
        pairs += len(covering)
        by = [name for name in covering if not checked[name][index]]
        if by:
            broken.append({"index": index, "attacks": by})
    message = (f"proof hygiene: {len(broken)} of {len(certified)} images certified robust broken by an attack "
               f"(images {', '.join(str(b['index']) for b in broken)})" if broken else
               f"proof hygiene: {len(certified)} images certified robust, {images} of them attacked by "
               f"{len(checked)} attacks, none broken")
    return {
        "status": FAIL if broken else PASS,
        "message": message,
        "certified": len(certified),
        "attacks": sorted(checked),
        "unchecked": sorted(name for name, v in attacks.items() if v is None),
        "checked_images": images,
        "checked_pairs": pairs,
        "broken": broken,
        "broken_indices": [b["index"] for b in broken],
    }


def to_markdown(check):
    """Lines of Markdown stating a :func:`check_certified` result."""
    line = (f"Proof hygiene (per image): certified robust {check['certified']}, attacked {check['checked_images']} "
            f"(by up to {len(check['attacks'])} attacks, {check['checked_pairs']} image-attack pairs), "
            f"broken {len(check['broken'])}.")
    lines = [line if check["status"] == PASS else f"**{line}**"]
    if check["broken"]:
        lines.append("**Certified robust but broken by an attack (image: attacks): "
                     + "; ".join(f"{b['index']}: {', '.join(b['attacks'])}" for b in check["broken"]) + ".**")
    if check["unchecked"]:
        lines.append(f"Not checked per image ({len(check['unchecked'])} attacks whose per-image outcomes were not "
                     f"stored): {', '.join(check['unchecked'])}.")
    if check["attacks"]:
        lines.append(f"Attacks checked: {', '.join(check['attacks'])}.")
    return lines
