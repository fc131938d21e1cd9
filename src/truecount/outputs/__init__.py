"""What users read: run folders, the report and its figures. Renders results; computes none.

``runs`` (run folders: writing without overwriting, reading back, rerun provenance), ``report``
(report.md and report.html from an analysis) and ``figures`` (every figure, from draws).
"""
