"""Scale-out on Ray (optional extra `ray`): a pool of verifier actors and pivot profiling over it.

    from pivot_algo.distributed import VerifierPool, profile_with_pool

Importing this package does not import Ray; `VerifierPool` does, when it is built.
"""

from pivot_algo.distributed.ray_pool import (
                                             FixedActions,
                                             PolicyActions,
                                             PoolStats,
                                             VerifierPool,
                                             profile_with_pool,
)

__all__ = ["FixedActions", "PolicyActions", "PoolStats", "VerifierPool", "profile_with_pool"]
