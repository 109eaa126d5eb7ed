"""The gateway: one endpoint, speaking OpenAI's and Anthropic's APIs, in front of many presets
(`vllm-launch gateway`).

routes.py maps the names clients use to presets; protocols.py lists what each protocol routes and how it
says its errors (pure); schedule.py decides, from the memory estimate, what must stop or sleep for a
server to start (pure); backends.py owns each server's life through the supervisor (start on demand,
wait, sleep, wake, stop when idle); proxy.py is the aiohttp app that routes and streams; service.py runs
it (foreground or detached, with its own record). aiohttp and prometheus-client are imported only here.
"""
