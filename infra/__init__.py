"""Ops tooling: the stateful-resources template, the IAM policies, the wiring and the Node layer."""
