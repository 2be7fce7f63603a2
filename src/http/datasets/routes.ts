/** GET /v1/datasets: what the caller may export — columns, filters, formats and limits. */
import type { FastifyInstance } from "fastify";
import { planAllows } from "../../domain/tenant.js";
import { callerOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { presentDataset } from "./presenter.js";
import { DatasetListSchema } from "./schemas.js";

/** The dataset route uses no store: the registry and the caller's plan answer it. */
export function datasetRoutes(app: FastifyInstance, deps: Pick<HttpDeps, "datasets">): void {
  app.get(
    "/v1/datasets",
    {
      config: { scope: "datasets:read" },
      schema: {
        tags: ["datasets"],
        summary: "List datasets",
        response: { 200: DatasetListSchema },
      },
    },
    async (request) => {
      const { plan } = callerOf(request);
      return {
        data: deps.datasets
          .list()
          .filter((d) => planAllows(d.descriptor.plans, plan))
          .map((d) => presentDataset(d.descriptor)),
      };
    },
  );
}
