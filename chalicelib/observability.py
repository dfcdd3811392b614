"""Structured JSON logs and CloudWatch metrics (aws-lambda-powertools), shared by the API, the
runner and the housekeeping functions. ``app.py`` applies both to every function as Chalice's docs
show (``ConvertToMiddleware``): each invocation's logs carry the Lambda context (request id, cold
start), and its metrics are sent as EMF documents when it returns."""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from .protocol import SERVICE

NAMESPACE = "SequenceHub"

# Creating these has no side effects beyond configuring their own handler and metric set.
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# The Lambda handler decorators, as ``ConvertToMiddleware`` takes them.
inject_lambda_context = functools.partial(logger.inject_lambda_context, clear_state=True)
log_metrics = functools.partial(metrics.log_metrics, capture_cold_start_metric=True)


def metrics_enabled() -> bool:
    """Powertools' switch (``POWERTOOLS_METRICS_DISABLED``, set by the embedded hub). Its cold-start
    metric, its flush at 100 values and ``single_metric`` print whatever it says, so we ask it first."""
    return not is_metrics_disabled()


def for_stage(stage: str) -> None:
    """Every metric of this process is the stage's (dev and prod may share an account)."""
    if metrics.default_dimensions.get("stage") != stage:
        metrics.set_default_dimensions(stage=stage)


def instance_started() -> None:
    if metrics_enabled():
        metrics.add_metric(name="InstanceStarted", unit=MetricUnit.Count, value=1)


def package_stored(size: int) -> None:
    if metrics_enabled():
        metrics.add_metric(name="PackageBytes", unit=MetricUnit.Bytes, value=size)


def request_failed() -> None:
    """An API request that failed inside the hub (answered 500), not one the user got wrong."""
    if metrics_enabled():
        metrics.add_metric(name="RequestFailed", unit=MetricUnit.Count, value=1)


def instance_ended(status: str, duration_ms: float) -> None:
    """An end by status (``errored`` are the failures) and how long the instance ran, sent now with
    the status as a dimension of these two metrics only."""
    if not metrics_enabled():
        return
    dimensions = {"service": SERVICE, **metrics.default_dimensions}
    for name, unit, value in (("InstanceEnded", MetricUnit.Count, 1.0),
                              ("InstanceDuration", MetricUnit.Milliseconds, duration_ms)):
        with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions=dimensions) as metric:
            metric.add_dimension(name="status", value=status)
