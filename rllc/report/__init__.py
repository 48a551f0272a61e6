"""Reporting: the table registry, the claims scorecard, figures, the tokens-in-context viewer.

Inner order (each depends only on the ones above it):
  tables   every table's file, columns and writer
  claims   the paper's checkable claims as functions of a run's tables
  figures  one house style; every figure stamped with what made it
  viewer   static HTML pages of top tokens in context
  compare  two runs' tables side by side (reruns, refactors)
"""
