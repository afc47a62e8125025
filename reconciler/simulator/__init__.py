"""The project's own flaky payment gateway: faults on demand, ground truth kept, calls counted.

Gateway API (faulty, every call logged):
    POST /v1/payments          {amount, currency, reference} + Idempotency-Key -> 201, or 200
                               with the same payment for a key seen before
    GET  /v1/payments/<id>     the payment as of the simulator clock; unknown -> 404

Control plane (never faulty, never counted):
    GET  /_sim/truth           every payment's current and final status
    GET  /_sim/calls           API calls per payment, plus totals
    GET  /_sim/webhooks        delivery attempts and lost events
    POST /_sim/payments        create without faults; may fix final_status, settle_after_s
    GET|POST /_sim/clock       read, or move forward by {"advance_s": x}
    GET|POST /_sim/faults      read, or change runtime settings (SimConfig field names)
    POST /_sim/outage          {"duration_s": x}: every /v1 call answers 503 from now
    POST /_sim/flush           deliver every due webhook and wait until none is due
    GET  /_sim/stats           counters
"""

from reconciler.simulator.app import create_app
from reconciler.simulator.config import SimConfig

__all__ = ["SimConfig", "create_app"]
