"""Run reports: the JSON a recipe run writes, rendered as Markdown for people."""


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def to_markdown(report):
    """Render a recipe run's ``report.json`` content as a Markdown document."""
    data, deployed = report["dataset"], report.get("deployed")
    lines = [
        f"# edgebnn run: {report['recipe']}",
        "",
        f"- model: `{report['model']['family']}` precision `{report['model']['precision']}`, "
        f"input bits `{report['model']['input_bits']}`; {report['model']['parameters']:,} parameters",
        f"- dataset: `{data['name']}`, trained on {data['train_size']:,} images, "
        f"tested on {data['test_size']:,} (attacks on {data['attack_size']:,})",
        f"- clean accuracy (Keras): **{_pct(report['clean_accuracy'])}**",
        f"- wall time: {report['seconds']:.1f} s",
        "",
        "## Attacks (crafted against the Keras model; white-box ones use straight-through gradients)",
        "",
        "| attack | eps | accuracy |",
        "|---|---:|---:|",
        *(f"| {a['name']} | {'-' if a['eps'] is None else format(a['eps'], 'g')} | {_pct(a['accuracy'])} |"
          for a in report["attacks"]),
        "",
    ]
    if deployed:
        ratio = deployed["float_tflite_bytes"] / deployed["tflite_bytes"]
        lines += [
            f"## Deployed model ({deployed['target']})",
            "",
            "| quantity | value |",
            "|---|---:|",
            f"| `.tflite` bytes | {deployed['tflite_bytes']:,} |",
            f"| float TFLite bytes (same graph) | {deployed['float_tflite_bytes']:,} |",
            f"| size ratio | {ratio:.2f}x |",
            "| weight layers: binary / int8 / float | "
            f"{' / '.join(str(deployed['layer_ops'][k]) for k in ('binary', 'int8', 'float'))} |",
        ]
        if "accuracy_clean" in deployed:  # verified against the Keras model
            lines += [
                f"| accuracy, clean (TFLite) | {_pct(deployed['accuracy_clean'])} |",
                f"| agreement with Keras, clean | {_pct(deployed['agreement_clean'])} |",
                f"| accuracy, adversarial (TFLite) | {_pct(deployed['accuracy_adversarial'])} |",
                f"| agreement with Keras, adversarial | {_pct(deployed['agreement_adversarial'])} |",
                f"| max abs probability difference | {deployed['max_abs_prob_diff']:.2e} |",
            ]
        else:
            lines.append("| verified against Keras | no (`deploy.verify = false`) |")
        lines.append("")
    return "\n".join(lines)
