"""Text encoders: any BERT-family model via transformers, loaded offline."""
