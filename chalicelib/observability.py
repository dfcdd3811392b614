"""Structured JSON logging (aws-lambda-powertools) shared by the API and the runner."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from .protocol import SERVICE

# Creating a Logger has no side effects beyond configuring its own handler.
logger = Logger(service=SERVICE)
