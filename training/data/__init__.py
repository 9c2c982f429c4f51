"""The data a run trains on: labelled images found and loaded (images.py), the dataset audit
(audit.py, `python -m training.data.audit`), leak-free splits (split.py) and the arrays fitting
and evaluation use (prepare.py)."""
