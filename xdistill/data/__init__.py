"""Data loading: NER file readers and dataset helpers."""
