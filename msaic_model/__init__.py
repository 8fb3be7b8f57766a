"""PyTorch side of the pipeline: MSAIC-Net, baselines, losses, training and evaluation."""
