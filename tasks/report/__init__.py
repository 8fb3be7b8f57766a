"""Reports for informatics teams: the data-quality report of a store (`quality`) and the
self-contained HTML (`html`), figures (`figures`) and contract checks (`contracts`) it uses."""

from __future__ import annotations

from tasks.report.quality import QualityReport, build_report, load_inputs, summary_line, write_report

__all__ = ["QualityReport", "build_report", "load_inputs", "summary_line", "write_report"]
