"""A FastAPI app that starts leaking memory when asked, for the memory-rule
end-to-end test: POST /leak?mbps=50 makes this process grow by 50 MB a
second until it is stopped. A fresh copy does not leak."""
import asyncio
import os

from fastapi import FastAPI

app = FastAPI()
held = []  # what the leak holds on to
tasks = []


@app.get("/")
async def root():
    return {"ok": True, "pid": os.getpid()}


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
