"""The front doors: the ``llmsplit`` command (`cli`: ``train | evaluate | sweep | profile | map | server``), its
commands (`train`, `evaluate`, `sweep` with `sweep_results`), the registry of agents by name (`registry`), and what
they share (`args`: ``key:value`` and grid parsing; `common`: the entry wrapper, evaluation seeds, run summaries)."""
