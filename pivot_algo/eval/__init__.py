"""Evaluation: in-domain success over whole episodes, and the cheaper pivot-state reward."""
