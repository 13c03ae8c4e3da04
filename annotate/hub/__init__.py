"""The Hub side of a built dataset: its data card (templates in ``datacards/``) and publishing."""
