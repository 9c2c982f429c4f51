"""The serving contract, owned by neither side: what a model takes in and says about itself.

- `signatures`: the SavedModel signature names, tensor keys and model_info (`info_json`) fields;
- `preprocess`: bytes -> the model's uint8 input (pictures and DICOM, via `dicom`), the one
  function training and serving share;
- `scan_rule`: slice probabilities -> one score and verdict per scan.

The gateway, training and the local model server import it; it imports none of them.
"""
