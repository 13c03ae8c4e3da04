"""vocmask.benchmark: score explanation heatmaps against ground-truth masks and rank methods.

Modules: metrics (segmentation, torch-free), localisation (threshold-free), faithfulness (detector,
torch imported lazily), submission (format + checks), score, chance, leaderboard, cli.
"""
