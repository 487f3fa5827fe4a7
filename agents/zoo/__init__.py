"""The front doors: the registry of agents by name (`registry`), ``llmsplit train | evaluate | sweep | profile | map``
(`cli`), and their argument parsing (`args`)."""
