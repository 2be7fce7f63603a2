/** Response schema of /v1/datasets. */
import { Type } from "typebox";
import { Nullable } from "../schemas.js";

export const DatasetListSchema = Type.Object({
  data: Type.Array(
    Type.Object({
      name: Type.String(),
      description: Type.String(),
      columns: Type.Array(
        Type.Object({ name: Type.String(), type: Type.String(), description: Type.String() }),
      ),
      filters: Type.Array(
        Type.Object({ name: Type.String(), type: Type.String(), description: Type.String() }),
      ),
      formats: Type.Array(Type.String()),
      limits: Type.Object({
        max_range_days: Type.Number(),
        max_rows: Type.Integer(),
        max_bytes: Type.Integer({ description: "Encoded size before compression." }),
      }),
      plans: Nullable(Type.Array(Type.String())),
    }),
  ),
});
