"""Experiments: the lifecycle state machine, playbooks, and proposals from scored opportunities."""
