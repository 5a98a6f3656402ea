"""Experiments: proposals from the scored opportunities (the lifecycle and its CLI are in
core/experiments and `ventureloop experiments`)."""

import dagster as dg

from assets import with_code_references
from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(assets=with_code_references([experiment_proposals]))
