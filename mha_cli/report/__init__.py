"""Turning RunReports into tables (terminal, Markdown), JSON and CSV files.

`rows.py` decides what each table holds, once; `terminal.py` and
`markdown.py` only render those rows. No torch here.
"""
