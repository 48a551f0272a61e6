"""Data: registry corpora, the tokenizer, token datasets and named distributions.

Inner order (each depends only on the ones above it):
  corpus     fetch pinned registry sources, documents, the manifest
  tokenizer  byte-level BPE with a BOS token, cached by what it is trained on
  tokens     token datasets per split and domain; windows, samples, held-in windows
"""
