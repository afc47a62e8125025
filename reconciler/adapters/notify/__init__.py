"""Delivering notifications to merchants' endpoints: destination checks and the HTTP sender."""
