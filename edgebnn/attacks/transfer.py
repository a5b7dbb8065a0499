"""Transfer attack: adversarial examples crafted on a source model, evaluated on a target."""

import numpy as np

from edgebnn.attacks.common import label_oracle


def transfer(source, target, x, y, *, attack="pgd", eps, batch_size=500, **options):
    """Craft ``attack`` on ``source`` (white-box) and measure how well it fools ``target``.

    Args:
        source: the attacker's model (callable returning logits).
        target: Keras model / callable, e.g. a ``.tflite`` wrapped by ``tflite_model_fn`` (labels only).
        x, y: clean inputs and their true labels.
        attack: attack name (see :func:`edgebnn.attacks.names`) or function.
        eps: attack strength.
        batch_size: crafting batch size.
        **options: passed to the attack.

    Returns:
        dict with ``x_adv`` (NumPy), ``source_accuracy`` and ``target_accuracy`` on ``x_adv``,
        and ``target_clean_accuracy`` on ``x``.
    """
    from edgebnn import attacks  # noqa: PLC0415 (the registry imports this module)

    attack_fn = attacks.get(attack) if isinstance(attack, str) else attack
    x = np.asarray(x, np.float32)
    x_adv = np.concatenate([
        np.asarray(attack_fn(source, x[i : i + batch_size], eps=eps, y=np.asarray(y[i : i + batch_size]), **options))
        for i in range(0, len(x), batch_size)
    ])
    source_oracle, target_oracle = label_oracle(source), label_oracle(target)
    y = np.asarray(y)
    return {
        "x_adv": x_adv,
        "source_accuracy": float(np.mean(source_oracle(x_adv) == y)),
        "target_accuracy": float(np.mean(target_oracle(x_adv) == y)),
        "target_clean_accuracy": float(np.mean(target_oracle(x) == y)),
    }
