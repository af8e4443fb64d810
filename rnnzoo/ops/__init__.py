"""Pure functions: each recurrence as a readable reference loop beside its fast forms."""
