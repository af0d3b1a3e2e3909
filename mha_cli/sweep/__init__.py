"""`mha sweep`: grids of configs, run point by point, kept on disk as they finish.

grid.py expands the axes into points (and shards them), store.py owns the
sweep folder (sweep.json, points.jsonl, summary files), runner.py runs points
in this process or in child processes, summary.py turns point records into
tables, fastest implementations and scaling exponents. No torch at import.
"""
