"""Building quality profiles: the CLI (`llmsplit profile`), how a cell is measured (serial), the Ray cell runner,
and the split map of a profile (`llmsplit map`)."""
