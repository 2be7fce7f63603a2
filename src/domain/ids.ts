/** Identifiers. Exports and tenants use UUIDv7: time-ordered, so ids sort by creation and page well. */
import { v7 as uuidv7 } from "uuid";

export function newId(): string {
  return uuidv7();
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}
