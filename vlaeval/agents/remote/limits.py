"""The limits ``vlaeval serve`` applies unless told otherwise.

A module of its own, importing nothing, so the command line can show them as its defaults
without importing the server (and ``websockets``) at start-up.
"""

#: Requests an agent shared by all connections answers in one ``act_batch`` call at most.
DEFAULT_MAX_BATCH = 8

#: Agents (or, for a shared instance, connections) a server holds at most: room for a
#: multi-worker evaluation, while a flood of connections cannot load a model per socket.
DEFAULT_MAX_AGENTS = 8

#: Seconds a connection may stay silent before the server closes it and frees its slot: far
#: longer than any pause between a client's requests during an evaluation (an env reset, a slow
#: step), short enough that abandoned connections do not fill ``max_agents``.
DEFAULT_IDLE_TIMEOUT_S = 300.0
