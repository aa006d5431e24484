# Evaluation by the SemanticKITTI protocol: metrics (metrics.py), the `sgn-ros evaluate` command
# (cli.py) and the benchmark submission format (export.py). Kept import-light.
"""Evaluation: SemanticKITTI SSC metrics, the `sgn-ros evaluate` command, submission export."""
