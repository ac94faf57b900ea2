"""Small helpers shared by every stage: atomic file writes, config location, logging."""
