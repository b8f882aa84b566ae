"""Several instances sharing one store (--backend redis only): fan-out split over two.

1,000 subscribers split over two instances on one Redis, the publisher on the first,
against one instance holding all 1,000 on the same Redis, in the same run. objstore alone:
the reference has no shared store.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from ..drivers import log_fields, measure_phase, per_op_us
from ..results import Metric
from ..servers import Server, running
from .base import Ctx, scenario

__all__ = ["fanout_two"]


@scenario(
    "fanout_two",
    full={"subscribers": 1000, "sets": 300},
    quick={"subscribers": 1000, "sets": 30},
    backends=("redis",),
    servers=("objstore",),
    metrics=[
        Metric("two_cpu_us_per_delivery", "CPU µs per delivery, two instances + Redis"),
        Metric("one_cpu_us_per_delivery", "CPU µs per delivery, one instance + Redis"),
        Metric("two_over_one", "two instances / one, CPU per delivery"),
        Metric("two_all_last", "every subscriber got the last value (two)", "==", True),
        Metric("one_all_last", "every subscriber got the last value (one)", "==", True),
    ],
)
def fanout_two(ctx: Ctx) -> dict[str, Any]:
    """The fan-out of fanout1000 on one instance, then on two (the order alternates)."""
    n, m = ctx.size["subscribers"], ctx.size["sets"]
    setups = [1, 2] if ctx.round % 2 == 1 else [2, 1]
    out: dict[str, Any] = {}
    for count in setups:
        name = "one" if count == 1 else "two"
        with ExitStack() as stack:
            servers: list[Server] = [
                stack.enter_context(
                    running(
                        ctx.kind,
                        ctx.work / f"{name}-cache{i + 1}",
                        ctx.opts,
                        ctx.work / f"{name}-server{i + 1}.log",
                        extra_args=ctx.opts.objstore_args,
                    )
                )
                for i in range(count)
            ]
            # The first instance's readings count the others' CPU and Redis's too.
            first = servers[0]
            first.companions = (*(s.pid for s in servers[1:]), *ctx.companions)
            url = ",".join(f"ws://127.0.0.1:{s.port}/ws" for s in servers)
            # A key of each setup's own: the store (Redis) outlives the first setup.
            args = {"url": url, "subscribers": n, "sets": m, "key": f"fan-{name}"}
            gen = ctx.loadgen("fanout", args)
            result, t0, t1 = measure_phase(first, gen, timeout=300)
            errors = [s.log_errors() for s in servers]
        sched = result.get("server_cpu_s_schedstat")
        cpu = t1 - t0 if sched is None else sched
        out[f"{name}_cpu_us_per_delivery"] = per_op_us(cpu, result["deliveries"])
        out[f"{name}_all_last"] = bool(result["all_last"])
        out[f"{name}_deliveries"] = result["deliveries"]
        out[f"{name}_loadgen"] = result
        out.update({f"{name}_{k}": v for k, v in log_fields(max(errors)).items()})
    one, two = out["one_cpu_us_per_delivery"], out["two_cpu_us_per_delivery"]
    out["two_over_one"] = two / one if one and two is not None else None
    return out
