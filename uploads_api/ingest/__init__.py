"""Intake: streaming multipart and raw bodies to storage, with limits enforced on the way."""
