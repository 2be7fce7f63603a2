/** Request and response schemas of /files (signed links: parts of the local object store, zip archives of either store). */
import { Type } from "typebox";
import { noBody, responseHeader } from "../schemas.js";

export const FileParams = Type.Object({
  "*": Type.String({ description: "The part's object key, slashes included, as the signed link gives it." }),
});
export const FileQuery = Type.Object({
  expires: Type.Optional(Type.String({ maxLength: 20 })),
  filename: Type.Optional(Type.String({ maxLength: 300 })),
  signature: Type.Optional(Type.String({ maxLength: 100 })),
});
const PART_TYPES = ["application/gzip", "text/csv; charset=utf-8", "application/x-ndjson", "application/zip"];
const fileHeaders = {
  ETag: responseHeader("The file's entity tag, for If-None-Match, If-Match and If-Range."),
  "Last-Modified": responseHeader("When the file was written."),
  "Cache-Control": responseHeader("`private, no-cache`."),
};
const fileBody = (description: string, headers: Record<string, unknown>) => ({
  description,
  content: Object.fromEntries(PART_TYPES.map((t) => [t, { schema: { type: "string", format: "binary" } }])),
  headers: { ...fileHeaders, ...headers },
});
const downloadHeaders = {
  "Content-Disposition": responseHeader("`attachment` with the part's download name."),
  "Accept-Ranges": responseHeader("`bytes`."),
  "Content-Length": responseHeader("Bytes in this answer.", { schema: { type: "integer", minimum: 0 } }),
};

export const FileResponses = {
  200: fileBody("The whole part. Content-Type: application/gzip for .gz parts, else the format's type.", {
    ...downloadHeaders,
  }),
  206: fileBody("The requested byte range of the part.", {
    ...downloadHeaders,
    "Content-Range": responseHeader("`bytes START-END/SIZE`."),
  }),
  304: noBody("The client's copy (If-None-Match, If-Modified-Since) is current.", fileHeaders),
};
