"""Utilities: metrics, LR schedules, checkpoints, distributed set-up, logging, visualisation."""
