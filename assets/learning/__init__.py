"""Learning: the features of every proposed experiment as of its proposal, the source bandit that
steers discovery, the success and revenue predictors (versioned in MLflow, promoted only when
better), the LinUCB budget allocator and the strategy optimizer that re-weights the score.
The algorithms are in ml/; these assets read the warehouse, call them and record what they did."""

import dagster as dg

from assets import with_code_references
from assets.learning.features import experiment_features
from assets.learning.models import revenue_model, success_model

LEARNING_ASSETS: list = [experiment_features, success_model, revenue_model]
LEARNING_CHECKS: list = []

defs = dg.Definitions(assets=with_code_references(LEARNING_ASSETS), asset_checks=LEARNING_CHECKS)
