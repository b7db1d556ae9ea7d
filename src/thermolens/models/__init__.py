"""Models with hook points: loading, capturing attention logits, temperature inside the forward pass."""
