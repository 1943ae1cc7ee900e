"""The HTTP API: the front door for agencies, experts, coordinators and operators."""

from starter.api.app import create_app

__all__ = ["create_app"]
