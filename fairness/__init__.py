"""Fairness audits of the risk model's selections, and their HTML report."""
