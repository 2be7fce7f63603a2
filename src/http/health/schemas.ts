/** Response schemas of /healthz, /readyz and /metrics. */
import { Type } from "typebox";

const ReadinessSchema = Type.Object({
  status: Type.Literal("ready"),
  checks: Type.Record(Type.String(), Type.Literal("ok"), {
    description:
      "Each dependency checked (database, storage, disk when local, redis when configured) → `ok`.",
  }),
});

export const HealthResponses = { 200: Type.Object({ status: Type.Literal("ok") }) };
/** 200 when every dependency can serve; otherwise 503 service_unavailable naming each in `details`. */
export const ReadinessResponses = { 200: ReadinessSchema };
export const MetricsResponses = {
  200: {
    description: "Prometheus text exposition format.",
    content: { "text/plain; version=0.0.4; charset=utf-8": { schema: { type: "string" } } },
  },
};
