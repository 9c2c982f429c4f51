"""The Keras EfficientNet-Lite port against the reference PyTorch model's ImageNet answers
(tests/training/data/efficientnet_lite_reference.json, written by
tools/efficientnet_reference/reference.py), and the torch-free checkpoint reader."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.nets import efficientnet_lite as el
from training.nets.torch_checkpoint import LEGACY_MAGIC, CheckpointError, load_state_dict

REFERENCE_FILE = Path(__file__).parent / "data" / "efficientnet_lite_reference.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text())
skimage_data = pytest.importorskip("skimage.data")


def _pixels(name: str, size: int) -> np.ndarray:
    img = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
    return np.asarray(img.resize((size, size), Image.BILINEAR), np.float32)[None] / 255.0


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(REFERENCE["models"]))
def test_port_reproduces_the_reference_imagenet_answers(variant):
    model = el.pretrained(variant, classifier=True)
    size = el.get_variant(variant).resolution
    for picture, expected in REFERENCE["models"][variant].items():
        logits = model.predict(_pixels(picture, size), verbose=0)[0]
        assert [int(i) for i in np.argsort(-logits)[:5]] == expected["top5"], picture
        np.testing.assert_allclose(logits, expected["logits"], atol=2e-3, rtol=0)


def test_the_top_classes_are_what_the_pictures_show():
    cats, espresso = {281, 282, 285}, 967  # tabby, tiger cat, Egyptian cat; espresso
    for answers in REFERENCE["models"].values():
        assert set(answers["chelsea"]["top5"][:3]) == cats
        assert answers["coffee"]["top5"][0] == espresso


def test_lite0_checkpoint_reads_without_torch_and_fills_every_layer():
    state = load_state_dict(el.get_variant("lite0").checkpoint())
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    model = el.build("lite0", classifier=True)
    assert params == model.count_params() == 4_694_024
    weighted = [layer for layer in model.layers if layer.weights]
    assert el.load_imagenet(model, "lite0") == len(weighted)


def test_a_truncated_backbone_loads_its_part_and_gets_smaller():
    stage5 = el.pretrained("lite0", size=96, last_stage=5)
    assert stage5.output_shape == (None, 6, 6, 112)
    assert stage5.count_params() < el.build("lite0").count_params() / 3


def test_another_variants_weights_do_not_fit(monkeypatch):
    lite0 = el.VARIANTS["lite0"].checkpoint()
    monkeypatch.setattr(el.Variant, "checkpoint", lambda self: lite0)
    with pytest.raises(el.TrainingError, match="shapes differ"):
        el.pretrained("lite2")


def _legacy_file(state_pickle: bytes) -> io.BytesIO:
    f = io.BytesIO()
    for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(obj, f, protocol=2)
    f.write(state_pickle)
    pickle.dump([], f, protocol=2)
    return f


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file(pickle.dumps({"w": Evil()}, protocol=2)).getvalue())
    with pytest.raises(CheckpointError, match="print"):
        load_state_dict(path)


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(CheckpointError, match="magic"):
        load_state_dict(path)
