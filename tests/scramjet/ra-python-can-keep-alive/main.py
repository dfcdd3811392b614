import asyncio


async def run(context, input, *args):
    """Asked to stop with SEND_KEEPALIVE as its first argument, it keeps itself alive instead."""
    if args and args[0] == "SEND_KEEPALIVE":
        context.set_stop_handler(lambda timeout=0, can_keep_alive=False: context.keep_alive(float(args[1])))
    await asyncio.sleep(10**9)
