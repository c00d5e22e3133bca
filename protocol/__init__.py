"""What the validator and the depot both speak: codes, keys, messages, signatures, list files."""
