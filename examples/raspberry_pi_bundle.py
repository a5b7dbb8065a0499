"""Deploy your model to a Raspberry Pi bundle.

Converts the model (for stock TFLite, "portable", or for Larq Compute Engine, "lce"),
verifies the .tflite against Keras on the test images, writes the device bundle (model,
the test set as uint8 pixels, manifest with the expected accuracy and sha256 sums), and
runs the bundle with the device runner as the Raspberry Pi would (NumPy and a TFLite
interpreter only; see docs/raspberry-pi.md):

    python examples/raspberry_pi_bundle.py --out runs/pi_bundle
    python examples/raspberry_pi_bundle.py --model runs/own_model_files/my.keras --data runs/own_model_files/data.npz
    # on the Pi: python -m edgebnn.deploy.device verify pi_bundle
"""

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_arguments, model_and_data  # noqa: E402

from edgebnn.deploy.bundle import bundle  # noqa: E402
from edgebnn.deploy.convert import convert  # noqa: E402
from edgebnn.deploy.verify import verify  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/pi_bundle"), help="the bundle's folder")
    parser.add_argument("--target", default="portable", choices=["portable", "lce"])
    args = parser.parse_args(argv)

    model, x_test, y_test = model_and_data(args)
    flatbuffer = convert(model, target=args.target)
    checked = verify(flatbuffer, keras_model=model, x=x_test, y=y_test)["clean"]
    print(f"{args.target} .tflite: {len(flatbuffer):,} bytes; accuracy {checked['accuracy_tflite']:.4f}, "
          f"agreement with Keras {checked['agreement']:.4f}")
    manifest = bundle(flatbuffer, x_test, y_test, args.out, keras_model=model, name=model.name)
    print(f"bundle in {args.out}: {manifest['eval_set']['n']} images, expected accuracy "
          f"{manifest['expected']['accuracy']:.4f}")
    if args.target == "portable":  # the LCE runtime is for the device; stock TFLite runs here too
        device = subprocess.run([sys.executable, "-m", "edgebnn.deploy.device", "verify", str(args.out)],
                                capture_output=True, text=True)
        print(device.stdout.strip())
        if device.returncode != 0:
            print(device.stderr.strip(), file=sys.stderr)
            return device.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
