/** Writes clients/typescript/src/generated/openapi.ts from the current /openapi.json (`npm run client:types`). */
import fs from "node:fs";
import { GENERATED_TYPES, renderClientTypes } from "./client-types.js";

fs.writeFileSync(GENERATED_TYPES, await renderClientTypes());
process.stdout.write("clients/typescript/src/generated/openapi.ts written\n");
