"""python-hl7's asyncio MLLP server (hl7.mllp.start_hl7_server), as its documentation shows it:
parse each message and answer with message.create_ack() (MSA-1 AA).

Usage: python3 python_hl7_server.py PORT
"""
import asyncio
import sys

import hl7
import hl7.mllp

# Large enough for the 16 MiB scenario (asyncio's default StreamReader limit is 64 KiB).
LIMIT = 64 * 1024 * 1024


async def process_hl7_messages(reader, writer):
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()


async def main(port):
    server = await hl7.mllp.start_hl7_server(
        process_hl7_messages, host="127.0.0.1", port=port, limit=LIMIT
    )
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2575))
    except KeyboardInterrupt:
        pass
