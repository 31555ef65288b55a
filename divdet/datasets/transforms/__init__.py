"""Data transforms."""
from .det_member_views import DetMemberViews, RandomNoiseBlur
from .member_views import MemberViews

__all__ = ['DetMemberViews', 'MemberViews', 'RandomNoiseBlur']
