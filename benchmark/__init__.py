"""vocmask.benchmark: score explanation heatmaps against ground-truth masks and rank methods.

Modules: metrics (segmentation, torch-free), localisation (threshold-free), faithfulness (detector,
torch imported lazily), submission (checks; the format and writer live in annotate.core.submission), batch
(vectorised scoring), score, chance, leaderboard, run (explain + score every method, Table 1), cli.
"""
