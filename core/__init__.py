"""Config, data, layers, models, losses, optimizers, training loop and outputs."""
