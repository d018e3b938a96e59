"""The leakage audit: translate a leaked store's vectors into a known encoder's space, run the attacks of
`attacks/` on them (attributes, retrieval, keywords, sensitive items), re-run them against each defence, and
publish `report.json` + a self-contained `report.html` (see README, "Audit").

One idea per module: `attributes` and `leak` (what the user gives), `adaptation` (the attacker's translator),
`suite` (the attacks and their scores), `defences` (a row per defence), `summary` (the report's prose), `job`
(`audit()` itself).
"""

from vecbridge.jobs.audit.job import REPORT_FORMAT, audit, is_report_dir

__all__ = ["REPORT_FORMAT", "audit", "is_report_dir"]
