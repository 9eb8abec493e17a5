"""Sound classification (ESC-50) with focal modulation: data, features, models, training and interpretation."""
