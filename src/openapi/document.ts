/**
 * The OpenAPI 3.1 description of every route, registered next to the route from the same zod
 * schemas the handler parses with. `GET /openapi.json` serves it; test/edge/openapi.test.ts
 * fails when a registered route is missing from it (or the other way round).
 */
import type { RouteConfig } from "@hono/zod-openapi";
import { z } from "zod";
import type { App } from "../app-env.ts";
import { ERROR_CODES, OUTPUT_ERROR_NAMES, isOutputFamilyPath, type ErrorCode } from "../errors.ts";
import { KEY_SCOPE_MEANINGS, routeScope } from "../middleware/key-scope/index.ts";

/** Who may call a route; each maps to security schemes of the document. */
export type Auth = "none" | "apiKey" | "apiKeyOrStreamToken" | "streamToken" | "jwtOrInternal" | "admin" | "hostSignature";

const SECURITY: Record<Auth, Array<Record<string, string[]>>> = {
  none: [],
  apiKey: [{ apiKey: [] }],
  apiKeyOrStreamToken: [{ apiKey: [] }, { apiKeyBasic: [] }, { streamToken: [] }],
  streamToken: [{ streamToken: [] }],
  jwtOrInternal: [{ jwt: [] }, { internalSecret: [], organizationHeader: [] }],
  admin: [{ adminKey: [] }],
  hostSignature: [{ hostSignature: [] }],
};

/**
 * Codes an authenticated route can answer with before its handler runs; a tenant's credential of a
 * suspended organization is 403 (lib/organization-status.ts); the tenants' families are
 * rate-limited per key, the admin API and the host's routes are not. An internal call naming no
 * organization in X-Organization-Id is 400 (service-auth); a signed body is read only up to
 * MAX_SIGNED_BODY_BYTES, 413 past it (host-signature).
 */
const AUTH_ERRORS: Record<Exclude<Auth, "none">, ErrorCode[]> = {
  apiKey: ["unauthorized", "organization_suspended", "rate_limited", "service_unavailable"],
  apiKeyOrStreamToken: ["unauthorized", "organization_suspended", "rate_limited", "service_unavailable"],
  streamToken: ["unauthorized", "organization_suspended", "rate_limited", "service_unavailable"],
  jwtOrInternal: [
    "unauthorized",
    "organization_suspended",
    "invalid_request",
    "rate_limited",
    "service_unavailable",
    "jwt_keys_unavailable",
    "jwt_keys_invalid",
  ],
  admin: ["unauthorized"],
  hostSignature: ["unauthorized", "payload_too_large"],
};

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]),
      message: z.string(),
      requestId: z.string(),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .meta({ id: "Error" });

/** The Output family's error envelope (`/workflow...`, `/ready`, `/heartbeat`): Output's shape plus our code. */
export const outputErrorBodySchema = z
  .object({
    error: z
      .enum([...new Set(Object.values(OUTPUT_ERROR_NAMES))] as [string, ...string[]])
      .meta({ description: "The error's name, as Output's API server names it" }),
    message: z.string(),
    workflowId: z.string().optional().meta({ description: "The run the error concerns, when it concerns one" }),
    code: z
      .enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]])
      .meta({ description: "Outrider's stable error code (docs/errors.md)" }),
    requestId: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: "OutputError" });

/** Any JSON object (for payloads whose shape is the workflow's own). */
export const anyObject = z.record(z.string(), z.unknown());

export interface RouteDoc {
  method: "get" | "post" | "patch" | "put" | "delete";
  /** Hono path (`:param`). */
  path: string;
  summary: string;
  description?: string;
  tag: string;
  auth: Auth;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Body content type when not JSON (e.g. multipart/form-data). */
  bodyType?: string;
  /** The body may be left out (an empty body reads as `{}`). */
  bodyOptional?: boolean;
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
  errors?: ErrorCode[];
}

/**
 * The Workflow API and /heartbeat also take the key as Basic credentials, as Output's CLI sends it.
 * An API key's entries name the key scope the route needs (middleware/key-scope).
 */
function securityOf(doc: RouteDoc): Array<Record<string, string[]>> {
  const security = doc.auth === "apiKey" && isOutputFamilyPath(doc.path) ? [...SECURITY.apiKey, { apiKeyBasic: [] }] : SECURITY[doc.auth];
  const scope = routeScope(doc.method, doc.path);
  if (!scope) return security;
  return security.map((entry) => ("apiKey" in entry || "apiKeyBasic" in entry ? { [Object.keys(entry)[0]!]: [scope] } : entry));
}

const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

/** Path parameters of a path, as strings, unless the route gives its own schema. */
function pathParams(path: string): z.ZodObject | undefined {
  const names = [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
  return names.length ? z.object(Object.fromEntries(names.map((n) => [n, z.string()]))) : undefined;
}

export function documentRoute(app: App, doc: RouteDoc): void {
  // Every route that reads a JSON body can also refuse it for depth (json-body's MAX_JSON_DEPTH),
  // and, when JSON is all it takes, for another media type.
  const readsJson = doc.errors?.includes("invalid_json") ?? false;
  const bodyErrors: ErrorCode[] = readsJson ? ["json_too_deep", ...(doc.bodyType ? [] : ["unsupported_media_type" as const])] : [];
  const scope = routeScope(doc.method, doc.path);
  const scopeErrors: ErrorCode[] = scope ? ["insufficient_scope"] : [];
  const codes = [
    ...new Set([
      ...(doc.auth === "none" ? [] : AUTH_ERRORS[doc.auth]),
      ...scopeErrors,
      ...(doc.errors ?? []),
      ...bodyErrors,
      // A read that a transient platform error broke (handleError in src/errors.ts).
      ...(doc.method === "get" ? ["service_unavailable" as const] : []),
      "internal_error" as const,
    ]),
  ];
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ERROR_CODES[code], [...(byStatus.get(ERROR_CODES[code]) ?? []), code]);
  const responses: RouteConfig["responses"] = {};
  for (const [status, r] of Object.entries(doc.responses)) {
    responses[status] = {
      description: r.description,
      ...(r.schema ? { content: { [r.contentType ?? "application/json"]: { schema: r.schema } } } : {}),
    };
  }
  const errorSchema = isOutputFamilyPath(doc.path) ? outputErrorBodySchema : errorBodySchema;
  for (const [status, list] of byStatus) {
    responses[String(status)] = {
      description: `Error: ${list.map((c) => `\`${c}\``).join(", ")} (docs/errors.md)`,
      content: { "application/json": { schema: errorSchema } },
    };
  }
  app.openAPIRegistry.registerPath({
    method: doc.method,
    path: toOpenApiPath(doc.path),
    summary: doc.summary,
    description: scope
      ? `${doc.description ? `${doc.description}\n\n` : ""}API keys need the scope \`${scope}\` (${KEY_SCOPE_MEANINGS[scope]}).`
      : doc.description,
    tags: [doc.tag],
    security: securityOf(doc),
    request: {
      params: doc.params ?? pathParams(doc.path),
      query: doc.query,
      ...(doc.body
        ? { body: { required: !doc.bodyOptional, content: { [doc.bodyType ?? "application/json"]: { schema: doc.body } } } }
        : {}),
    },
    responses,
  });
}

/** Security schemes named in SECURITY. */
export function registerSecuritySchemes(app: App): void {
  const r = app.openAPIRegistry;
  r.registerComponent("securitySchemes", "apiKey", { type: "http", scheme: "bearer", description: "API key `otr_<id>_<secret>`" });
  r.registerComponent("securitySchemes", "apiKeyBasic", {
    type: "http",
    scheme: "basic",
    description: "Output-compatible: the API key as Basic credentials",
  });
  r.registerComponent("securitySchemes", "streamToken", {
    type: "apiKey",
    in: "query",
    name: "token",
    description: "Run-scoped stream token (15 min)",
  });
  r.registerComponent("securitySchemes", "jwt", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "JWT with the organization in `org_id` (JWT_ORG_CLAIM)",
  });
  r.registerComponent("securitySchemes", "internalSecret", {
    type: "http",
    scheme: "bearer",
    description: "INTERNAL_SERVICE_SECRET (trusted internal callers)",
  });
  r.registerComponent("securitySchemes", "organizationHeader", { type: "apiKey", in: "header", name: "X-Organization-Id" });
  r.registerComponent("securitySchemes", "adminKey", { type: "http", scheme: "bearer", description: "ADMIN_API_KEY" });
  r.registerComponent("securitySchemes", "hostSignature", {
    type: "apiKey",
    in: "header",
    name: "x-outrider-signature",
    description:
      "HMAC-SHA256 of the request by the Node host (`v3=`), over method, path, x-outrider-timestamp, x-outrider-nonce and x-outrider-content-sha256 (the body's SHA-256, checked once the signature is)",
  });
}
