"""Framework-free learning: features, the source bandit, the success and revenue predictors, LinUCB
allocation, the strategy optimizer and the MLflow registry wrapper. Imports neither dagster nor dbt;
mlflow, xgboost and scikit-learn only inside the functions that need them (each costs seconds)."""
