"""Searches over channel configurations to a MACs, parameter or measured-latency budget.

`greedy_search` (NetAdapt) and `random_search` prune a trained model to `SearchSettings.target`, scoring
candidates as `CandidateSettings` says, and keep a resumable JSON-lines log in their folder.
"""

from segprune.search.evaluation import CandidateSettings
from segprune.search.greedy import family, greedy_search
from segprune.search.progress import SearchTimeLimit
from segprune.search.random_search import random_search
from segprune.search.settings import SearchResult, SearchSettings

__all__ = ["CandidateSettings", "SearchResult", "SearchSettings", "SearchTimeLimit", "family", "greedy_search", "random_search"]
