"""Deployment helpers: the nginx configuration generator."""
