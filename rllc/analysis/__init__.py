"""Analysis of trained models and their estimates.

Inner order (each depends only on the ones above it):
  head_types     the one vocabulary of head types; classification by scores
  interventions  mean ablation, per-token losses, tokens in context
  scores         previous-token, current-token, induction and ICL scores; per-head ICL
  patterns       what a head's tokens in context are (induction, Dyck, n-grams)
  trajectory     scores at every checkpoint, cached
  stages         critical points of a curve -> developmental stages
  clustering     clusters of per-head curves, per layer, against the types
  refinement     drLLC/wrLLC ratios, domain shifts, timing of changes (steepest change, onset)
  reference      the authors' published curves of the paper's model (data/reference), as our tables
  criteria       each claim's test, from the paper's words, calibrated on the reference and on nulls
"""
