"""Sibyl's integerization: each feature template gets a dense id space with
the most frequent value first, so the model and its statistics are plain
arrays indexed by id and the hottest features share cache lines."""

from typing import Dict, Iterable, List, Mapping


def vocabulary(counts: Mapping[str, int], min_count: int = 1) -> List[str]:
    """Values with at least `min_count` occurrences, by decreasing count (ties
    by value, so the ids are deterministic); a value's id is its position."""
    kept = [(-count, value) for value, count in counts.items() if count >= min_count]
    return [value for _, value in sorted(kept)]


def id_map(values: Iterable[str]) -> Dict[str, int]:
    """vocabulary -> {value: id}, the inverse of indexing the vocabulary."""
    return {value: index for index, value in enumerate(values)}
