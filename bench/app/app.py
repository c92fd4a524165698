"""FastAPI app for Bulwark's benchmark (bench/README.md), served by uvicorn.

GET /           a small JSON answer (the whole-stack and isolation probes)
POST /upload    reads the body in chunks and answers its length and sha256,
                so the client checks that the proxy passed it byte-identical
GET /download   streams `size` bytes of a deterministic pattern (see
                bench/cmd/bulwarkbench/pattern.go), so the client checks them
GET /cpu        burns `ms` (default 5) milliseconds of CPU on the event loop,
                a CPU-bound handler: the pool benchmark (bench/pool.sh)
"""
import hashlib
import time

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()

BLOCK = 1 << 20


def block(seed: str, k: int) -> bytes:
    """Block k of the pattern: sha256("seed:k") repeated to 1 MiB."""
    return hashlib.sha256(f"{seed}:{k}".encode()).digest() * (BLOCK // 32)


@app.get("/")
async def root():
    return {"message": "hello", "service": "bench", "items": list(range(20))}


@app.post("/upload")
async def upload(request: Request):
    h = hashlib.sha256()
    total = 0
    async for chunk in request.stream():  # never hold the whole body
        h.update(chunk)
        total += len(chunk)
    return {"received": total, "sha256": h.hexdigest()}


@app.get("/download")
async def download(size: int = 20 << 20, seed: str = "bulwark"):
    def gen():
        left, k = size, 0
        while left > 0:
            b = block(seed, k)
            n = min(left, len(b))
            yield b[:n]
            left -= n
            k += 1

    return StreamingResponse(gen(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


@app.get("/cpu")
async def cpu(ms: float = 5.0):
    # CPU time of this thread, not wall time: on a busy machine the request
    # still costs the same work, and the event loop is blocked meanwhile,
    # as with any CPU-bound handler.
    end = time.thread_time() + ms / 1000
    spins = 0
    while time.thread_time() < end:
        spins += 1
    return {"spins": spins}
