"""Mean-field attention models on the circle (and sphere): kernels, stationary states, transitions, dynamics."""
