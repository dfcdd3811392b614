import asyncio


async def run(context, input):
    """Answers each test-event with a test-response."""
    context.on("test-event", lambda message: context.emit("test-response", f"reply to {message}"))
    await asyncio.sleep(60)
