"""What users read: run folders, the report and its figures. Renders results; computes none."""
