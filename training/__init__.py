"""vocmask.training."""
