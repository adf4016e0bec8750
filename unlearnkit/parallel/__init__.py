"""Data parallelism under torchrun (:mod:`.torchrun`): the world of ranks, the parts of a global
batch, agreement on rank 0, DDP wrapping, relaunching a command. docs/distributed.md."""
