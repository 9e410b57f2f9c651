"""What was measured: results/<run-id>/ folders, and the format they are written in (results/format.py)."""
