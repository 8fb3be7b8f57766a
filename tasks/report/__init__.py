"""Reports for informatics teams: the data-quality report and the HTML and figure helpers it uses."""

from __future__ import annotations
