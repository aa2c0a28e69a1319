"""Scoring, a leaf of the package: ``scores`` holds the metric definitions (MMSA's regression metrics for
MOSI/MOSEI and CH-SIMS, the binary metrics of UR-FUNNY/MUStARD; docs/mmsa.md §4), ``stats`` the summaries
over seeds (mean, sample std, t-intervals) and the tables built from them."""
