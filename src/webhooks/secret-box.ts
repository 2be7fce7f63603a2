/**
 * Webhook signing secrets at rest. An HMAC signing key cannot be stored as a hash — the signer
 * needs the secret itself for every delivery — so it is sealed with AES-256-GCM under a key from
 * the configuration (EXPORTD_WEBHOOK_SECRETS_KEY, or one generated on first start and kept 0600 in
 * the data folder, like the link-signing secret). A copy of the database alone does not reveal the
 * secrets; the database and the key together do. Sealed form: `v1.<iv>.<tag>.<ciphertext>`
 * (base64url parts); the endpoint id is bound as associated data, so a sealed secret copied to
 * another endpoint's row does not open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SecretBoxError";
  }
}

export class SecretBox {
  private readonly key: Buffer;

  /** `keyMaterial`: any string of at least 32 characters; the AES key is its SHA-256. */
  constructor(keyMaterial: string) {
    this.key = createHash("sha256").update(keyMaterial).digest();
  }

  seal(secret: string, endpointId: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(endpointId));
    const sealed = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
    const parts = [iv, cipher.getAuthTag(), sealed].map((b) => b.toString("base64url"));
    return `v1.${parts.join(".")}`;
  }

  /** The secret; throws SecretBoxError when it was sealed under another key or altered. */
  open(sealed: string, endpointId: string): string {
    const [version, iv, tag, data] = sealed.split(".");
    if (version !== "v1" || !iv || !tag || data === undefined)
      throw new SecretBoxError("not a sealed secret");
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
      decipher.setAAD(Buffer.from(endpointId));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(data, "base64url")), decipher.final()]).toString(
        "utf8",
      );
    } catch {
      throw new SecretBoxError(
        "the endpoint's secret cannot be opened: it was sealed under another EXPORTD_WEBHOOK_SECRETS_KEY",
      );
    }
  }
}
