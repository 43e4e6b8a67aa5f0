"""Demand response: events from the grid company in, the committed response planned, evidence out."""
