"""Budgets and searches over channel configurations."""
