"""Estimation: SGLD, the LLC estimate (weight- and data-refined), calibration, sweeps.

Inner order (each depends only on the ones above it):
  sgld       the batch feed, the SGLD update, ESTIMATOR_VERSION
  batched    all chains at once under torch.func.vmap (GPU)
  result     LLCResult, chain diagnostics, the summary of one estimate
  llc        losses, sample_llc, estimate_llc
  known      models with a closed-form learning coefficient (validation)
  calibrate  step size x nbeta grids
  reruns     seed-to-seed spread against the reported standard errors (calibration)
  records    record keys, the on-disk store of estimates, cutting shorter ones, the tidy tables
  passes     planning batched passes on a GPU against its free memory
  sweep      the sweep and its executors (one process, worker processes, batched passes)
  grid       a sweep as tasks per (model, checkpoint, distribution) group; slurm: as a job array
  hessian    Hessian-vector products, Hutchinson traces, eigenvalue counts, Fisher trace
"""
