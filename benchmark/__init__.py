"""vocmask.benchmark."""
