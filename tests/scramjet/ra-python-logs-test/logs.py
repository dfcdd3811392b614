import asyncio


async def run(context, input):
    """Logs at three levels, then waits."""
    context.logger.debug("Debug log message")
    context.logger.info("Info log message")
    context.logger.warn("Warn log message")
    await asyncio.sleep(10)
