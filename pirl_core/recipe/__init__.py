"""The PI-RL recipe, policy-agnostic: samplers with exact log-likelihoods (Flow-Noise,
Flow-SDE, ODE), the actor-critic around a :class:`~pirl_core.policies.base.FlowPolicyAdapter`,
advantages (GAE, GRPO), the PPO loss and the trainer that applies it."""
