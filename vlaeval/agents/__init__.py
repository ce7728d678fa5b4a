"""Agents (policies) and the contract they implement; concrete agents import their heavy
dependencies lazily so that listing agents stays instant."""
