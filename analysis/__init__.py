"""offpath's analysis: reads results folders (never a live system) and turns them into numbers and reports."""
