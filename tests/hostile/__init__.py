"""Hostile-input suite (issue 12): a case table and a property-based run against real processes."""
