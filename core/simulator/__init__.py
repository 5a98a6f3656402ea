"""The market simulator: a seeded stand-in for the real market with a hidden ground truth per
opportunity (ground_truth) and the daily Stripe balance transactions and costs an experiment on it
produces (market). See docs/simulator.md."""
