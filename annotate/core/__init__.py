"""What every vocmask package imports from annotate: the spectral core, audio I/O, the dataset format and its
readers, the submission format, storage, the console helpers and the RawBoost augmentation."""
