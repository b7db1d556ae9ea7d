"""Token clustering through depth and the mean-field phase diagram (issue 17)."""
