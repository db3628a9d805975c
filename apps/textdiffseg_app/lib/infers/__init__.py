"""The text-prompted infer task and its request/response helpers."""
