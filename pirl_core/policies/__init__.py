"""Policy adapters: one per policy family, all behind :class:`FlowPolicyAdapter`."""
