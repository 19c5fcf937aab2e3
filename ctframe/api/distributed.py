"""What a trainer needs to run under torchrun (docs/distributed.md): this process's place, the few
collectives, shares of the work, and DistributedDataParallel around the trainable part. In one process
every function is the identity and loads no torch.distributed."""

from ctframe.runtime.distributed import (
    active,
    barrier,
    check_agree,
    from_main,
    gather,
    is_main,
    local_rank,
    main_goes_first,
    rank,
    sum_over_ranks,
    world_size,
)
from ctframe.runtime.sharding import rank_seed, shard_batches, shard_range, share_buffers, unwrap, wrap

__all__ = [
    "active",
    "barrier",
    "check_agree",
    "from_main",
    "gather",
    "is_main",
    "local_rank",
    "main_goes_first",
    "rank",
    "rank_seed",
    "shard_batches",
    "shard_range",
    "share_buffers",
    "sum_over_ranks",
    "unwrap",
    "world_size",
    "wrap",
]
