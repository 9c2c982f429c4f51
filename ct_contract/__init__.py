"""The serving contract, owned by neither side: what a model takes in and says about itself.

- `signatures`: the SavedModel signature names, tensor keys and model_info (`info_json`) fields;
- `preprocess`: bytes -> the model's uint8 input, the one function training and serving share.
  It sniffs the bytes once and hands them to one reader: `pictures` (Pillow) or `dicom` (which
  parses with `dicom_dataset` and turns frames into pixels with `dicom_values`); both build the
  slices and errors of `slices`;
- `scan_rule`: slice probabilities -> one score and verdict per scan.

The gateway, training and the local model server import it; it imports none of them.
"""
