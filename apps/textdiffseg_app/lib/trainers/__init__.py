"""The fine-tuning train task and its datastore/file helpers."""
