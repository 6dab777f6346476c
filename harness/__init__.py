"""PEFT Harness: compare parameter-efficient fine-tuning methods on your model, data and GPUs."""
__version__ = "0.1.0"
