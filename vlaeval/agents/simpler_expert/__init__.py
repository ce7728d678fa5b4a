"""Scripted privileged expert of the ``simpler`` suite (import path ``vlaeval.agents.simpler_expert.agent:SimplerExpert``)."""
