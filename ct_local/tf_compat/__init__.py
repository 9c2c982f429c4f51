"""Prove the committed SavedModels load and answer the same in TF Serving's TensorFlow version.

    ct-triage tf-compat                  # the version pinned in model-server/Dockerfile
    ct-triage tf-compat --version 2.19.0 # try another one
    ct-triage tf-compat --report build/tf-compat.json

(`python -m ct_local.tf_compat` and `make tf-compat` are the same command; docs/tf-compat.md.)

The one pin is the `FROM tensorflow/serving:<version>` line of model-server/Dockerfile (`pin`).
`tf_venv` builds (or reuses) a virtualenv build/venv-tf-<version>/ holding
`tensorflow-cpu==<version>` and its dependencies only, then runs the same `probe` under that
TensorFlow and under this interpreter's (the one the models are exported with): every committed
version directory model-server/models/<task>/<digits>/ is loaded with tf.saved_model.load and each
contract signature (ct_contract/signatures.py: serving_default, model_info, explain when present)
is run on fixed inputs (seeded uint8 images of the signature's shape, batch 2; model_info a [1]
int32 batch). `compare` checks the outputs: same versions, signatures and output keys, same dtypes
and shapes, strings equal, integers equal, floats within its tolerances; a table per model
version shows the largest absolute difference of every output.

Exit status: 0 every output agrees; 1 something differs (named on stderr); 2 the pin cannot be
read; 3 the pinned TensorFlow cannot be installed or run (PyPI unreachable, no such wheel).

The probe is the file probe.py run with `python -I probe.py ...`: it imports only the standard
library, numpy and tensorflow, never the project's packages (the contract names come in on the
command line), so it runs in a virtualenv that holds nothing but TensorFlow.
"""
