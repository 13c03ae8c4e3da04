"""Run under ``torchrun`` by tests/test_distributed.py: a few steps of a tiny dropout-free detector.

Usage: python -m torch.distributed.run --nproc_per_node N tests/ddp/detector_run.py DS OUT STEPS BATCH
(dropout off so that 1- and N-process losses can be compared: dropout masks cannot match across rank counts)."""
import sys
from dataclasses import replace

import torch

from training.detector.config import TrainConfig, preset
from training.detector.train import train
from training.distributed import finish, setup


def tiny_cfg():
    cfg = preset("small")
    fe = replace(cfg.frontend, conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, embed_dim=32,
                 num_heads=2, ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2)
    be = replace(cfg.backend, res_channels=(1, 4, 4, 8, 8, 8, 8), proj_dim=24, gat_dim=16, hs_dims=(8, 8), dropout=0.0)
    return replace(cfg, frontend=fe, backend=be, crop=4000)


if __name__ == "__main__":
    ds, out, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    world = setup("cpu")
    train(ds, out, tiny_cfg(), TrainConfig(steps=steps, batch_size=batch, lr=5e-4, seed=1, save_every=2, precise_bn_batches=1),
          progress=False, world=world)
    finish(world)
