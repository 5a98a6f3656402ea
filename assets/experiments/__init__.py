"""Experiments: proposals from the scored opportunities (the lifecycle and its CLI are in
core/experiments and `ventureloop experiments`)."""

import dagster as dg

from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(assets=[experiment_proposals])
