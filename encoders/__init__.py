"""Text encoders (text -> vectors): one interface, a registry of named models, and our own encoder core."""
