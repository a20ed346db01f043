"""The Spark job: raw CSVs -> validated, quarantined, leakage-safe curated features."""
