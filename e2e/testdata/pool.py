"""A FastAPI app for the worker-pool end-to-end tests: every answer names
the worker (BULWARK_WORKER) and its PID; POST /leak?mbps=N makes this
worker grow by N MB a second; GET /sleep?s=N answers after N seconds."""
import asyncio
import os

from fastapi import FastAPI

app = FastAPI()
held = []  # what the leak holds on to
tasks = []


@app.get("/")
async def root():
    return {"pid": os.getpid(), "worker": os.environ.get("BULWARK_WORKER")}


@app.get("/sleep")
async def sleep(s: float = 60):
    await asyncio.sleep(s)
    return {"pid": os.getpid(), "slept": s}


async def grow(mbps: int):
    step = mbps * 1_000_000 // 10  # every 100 ms
    while True:
        block = bytearray(step)
        block[::4096] = b"\x01" * len(range(0, step, 4096))  # resident, not just mapped
        held.append(block)
        await asyncio.sleep(0.1)


@app.post("/leak")
async def leak(mbps: int = 50):
    tasks.append(asyncio.get_running_loop().create_task(grow(mbps)))
    return {"leaking_mbps": mbps, "pid": os.getpid()}
