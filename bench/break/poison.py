"""A worker answer that always raises something other than ValueError (an empty sendEntityMessage):
how often is it retried, what does the worker hear, and does the instance ever end?

usage: poison.py [SECONDS]
"""
import asyncio
import logging
import sys
import time

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
from tests.helpers import InProcessEmulator  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 15


class Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = 0

    def emit(self, record):
        self.records += 1


def main():
    counter = Count()
    logging.getLogger("emulator").addHandler(counter)
    emu = InProcessEmulator().start()
    try:
        async def run():
            async with grpc.aio.insecure_channel(emu.address) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                await stub.StartInstance(pb.CreateInstanceRequest(instanceId="poison", name="wf"))
                call = stub.GetWorkItems(pb.GetWorkItemsRequest())
                attempts, codes, t0 = [], {}, time.monotonic()
                while time.monotonic() - t0 < SECONDS:
                    try:
                        item = await asyncio.wait_for(call.read(), max(SECONDS - (time.monotonic() - t0), 0.01))
                    except asyncio.TimeoutError:
                        break
                    if not item.HasField("orchestratorRequest"):
                        continue
                    attempts.append(time.monotonic() - t0)
                    bad = pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction())
                    try:
                        await stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
                            instanceId="poison", actions=[bad], completionToken=item.completionToken))
                        codes["OK"] = codes.get("OK", 0) + 1
                    except grpc.aio.AioRpcError as exc:
                        codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                        detail = exc.details()
                call.cancel()
                state = await stub.GetInstance(pb.GetInstanceRequest(instanceId="poison"))
                print(f"{len(attempts)} deliveries in {SECONDS:.0f} s at {[round(a, 1) for a in attempts]}; "
                      f"answers {codes} ({detail[:90]}); instance status "
                      f"{pb.OrchestrationStatus.Name(state.orchestrationState.orchestrationStatus)}; "
                      f"{counter.records} log records", flush=True)
        asyncio.run(run())
    finally:
        emu.stop()


main()
