"""vocmask.baselines."""
