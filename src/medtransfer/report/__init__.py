"""`medtransfer report`: one or many sweeps' run directories → Markdown + CSV + PNG (issue 4).

Kept import-light (no torch, no pandas at package import) so `medtransfer --help` stays fast; the pieces:
collect (find runs, failures, incomplete dirs, eval summaries) → stats (SciPy tests) → plots → build.
"""
