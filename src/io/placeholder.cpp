// Removed once src/io has real sources.
