"""Models: builders of L0/L1/L2, the fused forward, components, checkpoint stores.

Inner order (each depends only on the ones above it):
  build        HookedTransformer builders from a config; device resolution
  fused        a fused forward of the same function (the SGLD hot path), head-only losses
  components   "0:1", "1:6+1:7", "layer 0", "full" -> parameter masks
  checkpoints  one model's weights on disk (atomic writes, identity guard)
"""
