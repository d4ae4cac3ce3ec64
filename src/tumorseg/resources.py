"""Settings that only size a job (threads, memory, time limit), not what it computes."""

#: keys of a step's settings left out of its fingerprint and of its rule's params
RUNTIME_KEYS = ("threads", "mem_mb", "runtime")
