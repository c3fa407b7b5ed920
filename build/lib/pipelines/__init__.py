"""End-to-end compositions: the `idia` command line, the pipeline runner and its configurations."""
