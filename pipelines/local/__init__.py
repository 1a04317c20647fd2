"""The embedded default: run a compiled pipeline on this machine (kfp.local, warm task processes, containers)."""
