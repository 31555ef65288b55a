"""Evaluation: COCO metrics of the ensemble and every member."""
from .metrics import *  # noqa: F401,F403
