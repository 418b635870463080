//! Models, optimizers and the one generic training loop.
