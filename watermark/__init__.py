"""wmark's machine-learning side: trigger sets, data, models, embedding, attacks."""
