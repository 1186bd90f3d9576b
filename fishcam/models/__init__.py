"""Model specs, local-first resolution of weights, safe loading and the explicit fetch step."""
