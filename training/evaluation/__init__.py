"""A model's figures: metrics (metrics.py), the validation figures and info_json validation
(validation.py), the scan-level rule (scans.py), latency (latency.py), the report and its tables
(report.py), and where heatmaps fall (heatmap_mass.py,
`python -m training.evaluation.heatmap_mass`)."""
