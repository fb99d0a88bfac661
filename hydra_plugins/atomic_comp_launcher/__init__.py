"""Hydra launchers for atomic-comp: submitit's, plus validation before submission and a mode that returns at once."""
