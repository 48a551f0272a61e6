"""Estimation: SGLD, the LLC estimate (weight- and data-refined), calibration, sweeps.

Inner order (each depends only on the ones above it):
  sgld       the batch feed, the SGLD update, ESTIMATOR_VERSION
  batched    all chains at once under torch.func.vmap (GPU)
  llc        losses, chain diagnostics, sample_llc, estimate_llc, LLCResult
  known      models with a closed-form learning coefficient (validation)
  calibrate  step size x nbeta grids
  reruns     seed-to-seed spread against the reported standard errors (calibration)
  sweep      cached, resumable estimates over checkpoints x components x distributions
  curvature  Hessian-vector products, Hutchinson traces, eigenvalue counts, Fisher trace
"""
