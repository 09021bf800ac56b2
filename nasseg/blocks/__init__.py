"""Reusable layers shared by the model families (one file per idea)."""
