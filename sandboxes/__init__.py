"""Sandbox images: Dockerfiles and their builder (`python -m sandboxes.build`)."""
