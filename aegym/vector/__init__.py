"""Native batched vector envs and their Stable-Baselines3 adapter."""

from aegym.vector.env import AEGymVectorEnv
from aegym.vector.sb3 import AEGymSB3VecEnv, make_sb3_vec_env

__all__ = ["AEGymSB3VecEnv", "AEGymVectorEnv", "make_sb3_vec_env"]
