"""`hearth bench`: Hearth's speed, measured side by side in one run (`run.py` runs the figures)."""
