"""A FastAPI app for Bulwark's end-to-end tests, run by Debian's uvicorn.

Each route exercises one thing Bulwark must get right in front of a real
ASGI app: headers, bodies, slow answers, streams, memory and crashes.
"""
import asyncio
import hashlib
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

app = FastAPI()
held = []  # memory the app was told to hold


@app.get("/")
async def root():
    return {"ok": True, "pid": os.getpid()}


@app.api_route("/headers", methods=["GET", "POST"])
async def headers(request: Request):
    return {
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "client": request.client.host if request.client else None,
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
    }


@app.post("/upload")
@app.post("/bulk/upload")
async def upload(request: Request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    return {"len": n, "sha256": h.hexdigest(),
            "content_length": request.headers.get("content-length"),
            "transfer_encoding": request.headers.get("transfer-encoding")}


@app.get("/slow")
async def slow(s: float = 1.0):
    await asyncio.sleep(s)
    return {"slept": s}


@app.get("/big")
async def big(n: int = 1 << 20):
    return Response(content=b"x" * n, media_type="application/octet-stream")


@app.get("/sse")
async def sse(n: int = 3, gap: float = 0.5):
    async def events():
        for i in range(n):
            yield f"data: event {i}\n\n"
            await asyncio.sleep(gap)
    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/stream-nobuffer")
async def stream_nobuffer(n: int = 3, gap: float = 0.5):
    async def chunks():
        for i in range(n):
            yield f"chunk {i}\n"
            await asyncio.sleep(gap)
    return StreamingResponse(chunks(), media_type="text/plain",
                             headers={"X-Accel-Buffering": "no"})


@app.post("/hold")
async def hold(mb: int = 200):
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    held.append(block)
    return {"held_mb": sum(len(b) for b in held) >> 20, "pid": os.getpid()}


@app.post("/crash")
async def crash():
    os._exit(3)


@app.get("/env")
async def env():
    keys = ["DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE",
            "PYTHONUNBUFFERED", "PYTHONHASHSEED", "APP_GREETING"]
    return {k: os.environ.get(k) for k in keys}


@app.get("/status/{code}")
async def status(code: int):
    return PlainTextResponse(f"status {code}\n", status_code=code)
