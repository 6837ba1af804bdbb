"""Methods: one module per SSL/supervised method, composing encoders, heads and objectives."""
