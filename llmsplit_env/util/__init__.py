"""Small torch-free helpers shared by every subject: atomic writes, the cache directory, nested-dict merging, lazy
exports and the Ray connection."""
