"""The channel graph of a Keras functional model (grows with the structured-pruning work)."""
