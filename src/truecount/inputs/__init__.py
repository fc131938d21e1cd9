"""What users write, read and checked at the boundary: case files, model specs and their fields.

``case`` (the facts of a campaign: channels, claims, evidence, sources), ``spec`` (the assumptions:
priors with reasons, structural switches; the shipped specs are package data, ``truecount/specs/``) and
``_fields`` (typed reading of TOML tables with one-line located errors). Nothing here computes.
"""
