"""Scripted, privileged expert for the CALVIN suite (``vlaeval.agents.expert.agent:CalvinExpert``).

Kept import-free so that listing agents does not import pybullet.
"""
