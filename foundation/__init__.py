"""The foundation of the house: the error tree and the results format, which every layer may import; it imports nothing
of the project."""
