"""Where privacy settings, deletion requests, tombstones and used token nonces are kept."""
