"""Accuracy versus speed, for people: a sweep's rows as tables, plots and an HTML report (no experiments run here)."""

from segprune.report.html import build_report
from segprune.report.tables import balance_point, write_tables

__all__ = ["balance_point", "build_report", "write_tables"]
