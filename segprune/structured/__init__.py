"""Structured (channel) pruning: importance criteria, selection strategies and the one-shot API."""
